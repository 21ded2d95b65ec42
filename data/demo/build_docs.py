#!/usr/bin/env python3
"""Build the Fernwick Labs demo corpus: data/demo/docs.jsonl.

Every document below is fictional and was written by hand for the labeler
project (Apache-2.0). Fernwick Labs, its people, products, systems and
incidents are invented. The script is deterministic: running it again
rewrites docs.jsonl byte for byte.

Usage:  python data/demo/build_docs.py
"""
import json
import os

DOCS = []
DOC_TYPES = (
    "policy", "runbook", "design_doc", "postmortem", "meeting_notes",
    "onboarding", "product_spec", "ticket", "faq", "announcement",
)


def add(doc_id, title, author, space, doc_type, date, text):
    assert doc_type in DOC_TYPES, doc_type
    DOCS.append({
        "doc_id": doc_id,
        "title": title,
        "text": text.strip(),
        "author": author,
        "space": space,
        "doc_type": doc_type,
        "last_modified": date,
    })
    return text


def rep(text, *pairs):
    """Apply (old, new) replacements, insisting that each old string exists."""
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------

TRAVEL_2024 = add(
    "pol-travel-2024", "Travel Expense Policy (2024)", "Rafael Mendes",
    "Finance/Policies", "policy", "2024-01-15", r"""
# Travel Expense Policy (2024)

Owner: Rafael Mendes, Financial Controller. Applies to all Fernwick Labs employees and contractors travelling on company business from 1 January 2024.

## Before you travel
- Trips that include a flight or more than one night away need written approval from your manager before booking. A thumbs-up in the #travel-approvals channel counts as written approval.
- Book flights and hotels through the Fernwick travel desk (travel@fernwick.example) or the TripDesk portal so that bookings appear on the central company card. Personal bookings are reimbursed only if the travel desk could not match the price.
- International trips also need approval from your department head and a check with People Ops on visa requirements at least three weeks ahead.

## Transport
- Economy class for all flights under 6 hours. Premium economy is allowed for flights over 6 hours. Business class requires CFO approval.
- Standard-class rail. First class only when it is cheaper than standard at the time of booking (keep a screenshot).
- Taxis and ride-hailing are fine between 22:00 and 06:00, when carrying equipment, or when public transport would take more than twice as long.
- Mileage for personal cars is paid at 45p per mile for the first 10,000 business miles in a tax year.

## Accommodation and meals
- Hotel cap per night (including tax): London £160, Lisbon €130, Toronto CA$210, elsewhere £120 or local equivalent.
- Daily meal allowance while travelling: £45 (or €50 / CA$75). Alcohol is not reimbursable except at approved client dinners.
- Client entertainment needs a list of attendees and the business purpose in the claim.

## Claiming
- Submit claims in Expensa within 30 days of returning. Claims older than 90 days will be rejected.
- Attach itemised receipts for anything above £10. A bank statement is not a receipt.
- Claims up to £500 are approved by your manager; above £500 they also go to Finance.

## Not reimbursable
Upgrades bought for comfort, minibar, in-flight Wi-Fi for personal use, fines and parking tickets, lost luggage fees when you chose not to insure, and travel for a partner or family member.

Questions: #ask-finance or finance-ops@fernwick.example.
""")

add("pol-travel-2025", "Travel Expense Policy (2025)", "Rafael Mendes",
    "Finance/Policies", "policy", "2025-01-20", rep(
        TRAVEL_2024,
        ("Travel Expense Policy (2024)", "Travel Expense Policy (2025)"),
        ("from 1 January 2024.", "from 1 February 2025. This version replaces the 2024 policy; changes are marked (new)."),
        ("London £160, Lisbon €130, Toronto CA$210, elsewhere £120",
         "London £175 (new), Lisbon €140 (new), Toronto CA$225 (new), elsewhere £125"),
        ("£45 (or €50 / CA$75)", "£50 (or €55 / CA$80) (new)"),
        ("- Standard-class rail.", "- For journeys under 4 hours by train, take the train instead of flying (new).\n- Standard-class rail."),
        ("within 30 days of returning", "within 45 days of returning (new)"),
        ("Claims up to £500", "Claims up to £750 (new)"),
        ("above £500 they", "above £750 they"),
    ))

REMOTE_2023 = add(
    "pol-remote-2023", "Remote and Hybrid Work Policy v1", "Sofia Brandt",
    "HR/Policies", "policy", "2023-03-02", r"""
# Remote and Hybrid Work Policy (v1)

Effective 1 April 2023. Owner: Sofia Brandt, Head of People Operations.

Fernwick Labs is a hybrid company. We have offices in Bristol (HQ), Lisbon and Toronto, and many people work from home most of the week. This policy sets out the minimum expectations.

**Office days.** Employees who live within 50 km of an office are expected in the office on at least one anchor day per week. Anchor days are set per department: Engineering on Wednesdays, Sales and Customer Success on Tuesdays, G&A on Thursdays. Fully remote employees are expected to attend the quarterly on-site week in person.

**Core hours.** Be reachable between 10:00 and 15:00 in your local time zone. Put your working pattern in your PeopleHub profile and your calendar.

**Working from another country.** You may work from another country for up to 20 working days per calendar year, with manager approval and a PeopleHub "work abroad" request at least two weeks ahead. Longer stays need approval from People Ops and Legal because of tax and employment law.

**Home setup.** New starters receive a one-off home office allowance of £400 (see the Home Office Equipment Policy). Company laptops must be used on a secured home network or through Fernwick Connect (the corporate VPN) on public Wi-Fi.

**Security.** Do not print confidential documents at home. Lock your screen when you step away, even at home.

Exceptions are approved by your department head and recorded in PeopleHub.
""")

add("pol-remote-2025", "Remote and Hybrid Work Policy v2", "Sofia Brandt",
    "HR/Policies", "policy", "2025-06-11", rep(
        REMOTE_2023,
        ("(v1)", "(v2)"),
        ("Effective 1 April 2023.", "Effective 1 July 2025, replacing v1 (April 2023)."),
        ("on at least one anchor day per week", "on at least two anchor days per week"),
        ("Engineering on Wednesdays,", "Engineering on Tuesdays and Wednesdays,"),
        ("Sales and Customer Success on Tuesdays,", "Sales and Customer Success on Tuesdays and Thursdays,"),
        ("G&A on Thursdays.", "G&A on Wednesdays and Thursdays."),
        ("up to 20 working days", "up to 30 working days"),
        ("Lock your screen when you step away, even at home.",
         "Lock your screen when you step away, even at home.\n\n**Desk booking.** From v2, desks in Bristol and Lisbon are booked in the Deskly app; unbooked desks are released at 10:30."),
    ))

add("pol-pto", "Paid Time Off (PTO) and Leave Policy", "Sofia Brandt",
    "HR/Policies", "policy", "2025-02-03", r"""
# Paid Time Off (PTO) and Leave Policy

Owner: Sofia Brandt (People Operations). Last reviewed February 2025. This policy applies to all permanent employees of Fernwick Labs Ltd (UK), Fernwick Labs Unipessoal Lda (Portugal) and Fernwick Labs Canada Inc. Contractors should follow the terms of their contract. Where local law gives you more than this policy, local law wins.

## 1. Why we have this policy
We want people to take real breaks. Our engagement survey in late 2024 showed that 31% of engineers carried more than ten days of unused PTO into the new year, and that people on on-call rotations took the least leave. This policy therefore sets a generous allowance, a minimum, and clear rules on carry-over so that time off is actually used.

## 2. Annual allowance
| Entity | PTO days per year | Public holidays |
|---|---|---|
| UK | 27 | 8 bank holidays |
| Portugal | 25 | 13 national holidays + Lisbon municipal holiday (13 June) |
| Canada | 20 (rising to 25 after 3 years) | 10 statutory holidays (Ontario) |

The allowance is pro-rated for part-time employees and for people who join or leave part-way through the year. The PTO year runs from 1 January to 31 December.

On top of the allowance, everyone gets the **Fernwick Days**: the company closes between Christmas and New Year (usually three working days), announced each autumn in the #announcements channel. These days are not deducted from your allowance.

## 3. Minimum time off
Everyone is expected to take at least 15 PTO days per year, including one block of at least five consecutive working days. Managers receive a PeopleHub report in September listing people below 8 days taken so far, and are expected to plan time off with them.

## 4. Requesting PTO
1. Request time off in PeopleHub (Time Off > New Request). Choose "PTO" as the type.
2. Give at least two weeks' notice for absences of three days or more, and at least 48 hours for shorter ones. Shorter notice is fine for emergencies.
3. Your manager approves or discusses the request within three working days. Requests are approved by default if there is no response after five working days.
4. Add the absence to your calendar as "Out of office" and set an auto-reply.
5. If you are on an on-call rotation (see the SRE On-call Policy), arrange a swap in Beacon before your leave starts. Managers will not approve PTO that overlaps an on-call shift without a swap recorded.

During the December change freeze (see the Production Change Management Policy) the teams that own production systems keep a skeleton crew; talk to your manager early if you want the whole period off.

## 5. Carry-over
- Up to 5 unused days can be carried over into the next year. Carried-over days must be used by 31 March, after which they expire.
- In Portugal, carry-over follows the Labour Code: untaken days may be carried until 30 April of the following year when agreed with your manager.
- We do not pay out unused PTO except where required by law, or when you leave the company (see section 9).

## 6. Sick leave
Tell your manager as early as you can on the first day of sickness. No doctor's note is needed for absences of up to 7 calendar days (self-certification in PeopleHub under "Sick"). For longer absences we need a fit note (UK), baixa médica (Portugal) or doctor's note (Canada). Fernwick pays full salary for the first 20 working days of sickness in any rolling 12-month period, then statutory sick pay or local equivalent. Sick days do not reduce PTO. If you fall ill during PTO, you can convert those days to sick leave with a note.

## 7. Other leave
- **Parental leave**: see the separate Parental Leave Policy.
- **Bereavement**: up to 10 paid days for a partner, child or parent; up to 5 days for other close relatives. No evidence needed.
- **Compassionate / caring leave**: up to 5 paid days per year for caring for a dependant.
- **Volunteering**: 2 paid days per year for volunteering with a registered charity (PeopleHub type "Volunteering").
- **Jury service and public duties**: paid in full; send your summons to People Ops.
- **Moving house**: 1 paid day per year.
- **Learning days**: 3 days per year for conferences or study, agreed with your manager and recorded as "Learning".

## 8. Unpaid leave and sabbaticals
Unpaid leave of up to 4 weeks can be agreed with your manager and People Ops. After five years of service you can request a paid sabbatical of four weeks, to be taken within 18 months of the anniversary.

## 9. Leaving Fernwick
When you leave, accrued but untaken PTO is paid out with your final salary. If you have taken more PTO than you accrued, the difference is deducted from your final pay, as described in your contract.

## 10. Public holidays and working across offices
You follow the public holidays of the office or country in your contract, not the team you work with. If you need to work on a public holiday (for example because you are on call), you receive a day in lieu, recorded in PeopleHub as "Day in lieu" within one month.

## 11. Questions
Ask in #ask-people or email people@fernwick.example. The PTO FAQ in HR/FAQ covers the most common questions (half days, how pro-rating is calculated, how to see your balance).
""")

AUP_2023 = add(
    "pol-aup-2023", "Acceptable Use and Password Policy (2023)", "Hiroshi Tanabe",
    "Security/Policies", "policy", "2023-05-22", r"""
# Acceptable Use and Password Policy

Version 2023.1 · Owner: Hiroshi Tanabe, Head of Security · Review cycle: yearly

## Scope
All Fernwick Labs staff, contractors and anyone with a Fernwick account or company-managed device.

## Devices
- Only company-managed laptops (enrolled in MDM) may access production systems, Quarry, or customer data.
- Personal phones may be used for email, chat and MFA if they run a supported OS version and have a screen lock.
- Do not install software that is on the blocked list (IT/Blocked Software). Browser extensions need to be from the approved list.

## Passwords and MFA
- Passwords for Fernwick accounts must be at least 12 characters and must not be reused from any other service.
- Passwords are changed every 90 days.
- MFA is mandatory for SSO, email, the VPN and GitHub. Push notifications or TOTP apps are accepted; SMS codes are allowed only as a fallback.
- Use the company password manager (1Password Business) for every shared credential. Never paste secrets into chat, tickets or documents; use Strongbox for service credentials.

## Acceptable use
Company systems may be used for reasonable personal use (for example checking personal email at lunch) as long as it does not interfere with work, break the law, or expose company data. Do not use company systems for crypto-mining, torrenting, or storing large personal media collections.

## Reporting
Report lost devices, suspected phishing and accidental data exposure to security@fernwick.example or #security-help immediately, day or night. You will never be blamed for reporting quickly.

Violations may lead to disciplinary action.
""")

add("pol-aup-2024", "Acceptable Use and Password Policy (2024)", "Samir Qureshi",
    "Security/Policies", "policy", "2024-06-03", rep(
        AUP_2023,
        ("Version 2023.1 · Owner: Hiroshi Tanabe, Head of Security",
         "Version 2024.1 · Owner: Hiroshi Tanabe, Head of Security · Editor: Samir Qureshi"),
        ("- Passwords are changed every 90 days.",
         "- Passwords are no longer rotated on a schedule; change a password only if you suspect it was exposed (changed in 2024.1, following NCSC guidance)."),
        ("Push notifications or TOTP apps are accepted; SMS codes are allowed only as a fallback.",
         "Phishing-resistant MFA (security keys or platform passkeys) is required for admins and for anyone with production access from 1 September 2024. Push with number matching is accepted for everyone else. SMS codes are no longer allowed."),
        ("(1Password Business)", "(1Password Business; the Fernwick vault, not your personal vault)"),
        ("Violations may lead to disciplinary action.",
         "Generative AI tools: only the approved tools listed in IT/Approved AI Tools may be used with internal data, and customer data must never be pasted into them.\n\nViolations may lead to disciplinary action."),
    ))

ONCALL_2024 = add(
    "pol-oncall-2024", "SRE On-call Policy (2024)", "Tomasz Wierzbicki",
    "SRE/Policies", "policy", "2024-03-11", r"""
# SRE and Service On-call Policy

Owner: Tomasz Wierzbicki (SRE Lead). Applies to every engineering team that owns a service in production.

## Rotations
- Each production service has a primary and a secondary on-call in Beacon. Rotations are weekly, handing over on Monday at 10:00 UK time.
- Nobody is on call for more than one week in four. Teams with fewer than four trained people share a rotation with a sister team.
- New engineers shadow two full rotations before going primary (see "Getting ready for on-call" in Engineering/Onboarding).

## Response expectations
| Severity | Acknowledge within | Hands on keyboard within |
|---|---|---|
| P1 | 5 minutes | 15 minutes |
| P2 | 15 minutes | 30 minutes |
| P3 | next business day | — |

If the primary has not acknowledged a P1 page within 5 minutes, Beacon escalates to the secondary, then to the engineering manager after 15 minutes.

## Compensation
- Weekly on-call allowance: £250 (UK), €280 (Portugal), CA$420 (Canada).
- Time spent working on incidents outside working hours is paid at 1.5x or taken as time off in lieu, at your choice.
- If you are paged between 00:00 and 06:00, you may start late the next day.

## During a shift
- Keep your laptop and a charged phone with you. You must be able to reach a network within 15 minutes.
- Do not drink alcohol to a level that would impair your judgement.
- Log every page and the action taken in the #oncall-log channel.

## Handover
The outgoing primary writes a handover note covering open incidents, noisy alerts and planned changes, and runs through it with the incoming primary on Monday (see the on-call handoff runbook).
""")

add("pol-oncall-2026", "SRE On-call Policy (2026)", "Oluwaseun Adeyemi",
    "SRE/Policies", "policy", "2026-01-12", rep(
        ONCALL_2024,
        ("Owner: Tomasz Wierzbicki (SRE Lead).",
         "Owner: Tomasz Wierzbicki (SRE Lead). Revised January 2026 by Oluwaseun Adeyemi after the Beacon paging gap (INC-2025-029) and the move to two regions (Project Curlew)."),
        ("handing over on Monday at 10:00 UK time.",
         "handing over on Tuesday at 10:00 UK time (moved from Monday so that handover never falls on a UK bank holiday Monday)."),
        ("| P3 | next business day | — |",
         "| P3 | next business day | — |\n| P4 | ticket only, no page | — |"),
        ("then to the engineering manager after 15 minutes.",
         "then to the engineering manager after 15 minutes. Since February 2026 Beacon also sends a backup SMS and voice call through a second provider if the push notification is not delivered within 60 seconds."),
        ("£250 (UK), €280 (Portugal), CA$420 (Canada)", "£300 (UK), €330 (Portugal), CA$500 (Canada)"),
        ("and runs through it with the incoming primary on Monday",
         "and runs through it with the incoming primary on Tuesday"),
    ))

add("pol-incident-severity", "Incident Severity Levels and Declaration", "Tomasz Wierzbicki",
    "SRE/Policies", "policy", "2024-05-06", r"""
# Incident severity levels

Anyone at Fernwick can declare an incident. When in doubt, declare it and downgrade later. Use `/incident declare` in chat; Beacon creates an INC number (for example INC-2024-017), an incident channel and a Tracker ticket.

**P1 – Critical.** Customer-facing outage or data integrity problem affecting many customers: login unavailable, payments failing or double charging, invoices not sent, data exposure. Incident commander (IC) from the SRE rotation, status page update within 15 minutes, exec notified, postmortem mandatory within 5 working days.

**P2 – Major.** Significant degradation or a single large customer fully impacted: p99 latency for payments above 2 s for more than 10 minutes, a region degraded, delayed payouts. IC assigned, status page at IC's discretion, postmortem mandatory.

**P3 – Minor.** Internal tooling broken, non-critical feature degraded, data freshness in Quarry more than 6 hours behind. Handled by the owning team in working hours. Postmortem optional.

**P4 – Low.** Cosmetic bugs or noisy alerts. Ticket only.

Roles in P1/P2: incident commander (coordinates, does not fix), operations lead (hands on keyboard), communications lead (status page, customer success, #incidents), scribe (timeline). One person may hold several roles in a small incident, but the IC should not also be the operations lead for a P1.

Postmortems are blameless, follow the template in SRE/Postmortems, and include a timeline in UTC, root cause, contributing factors, what went well, and action items with owners and Tracker keys.
""")

add("pol-data-classification", "Data Classification Policy", "Ines Varga",
    "Security/Policies", "policy", "2023-10-09", r"""
# Data Classification Policy

Owner: Ines Varga (Legal & Compliance), with Security. Applies to all data created, stored or processed by Fernwick Labs.

We classify data into four levels. The label decides where the data may be stored, who may access it and how it is shared.

1. **Public** – marketing site, published docs, press releases. No restrictions.
2. **Internal** – wiki pages, meeting notes, most design docs, the org chart. Share within Fernwick only. May be stored in any approved SaaS tool.
3. **Confidential** – financial forecasts, contracts, HR records, security findings, source code, aggregated customer metrics in Quarry. Access on a need-to-know basis through groups; sharing outside Fernwick needs an NDA.
4. **Restricted** – cardholder data (PAN), bank account numbers, customer invoice contents, authentication secrets, personal data of customers' end-clients. Stored only in systems in PCI or SOC 2 scope (Tollgate vault, Ledger primary database, Strongbox). Never in chat, email, spreadsheets, Quarry raw zones or laptops.

Rules that people most often ask about:
- Quarry holds Confidential data by default. Restricted columns (for example `payer_iban`) are tokenised by the Sluice pipelines before loading; if you find raw Restricted data in Quarry, report it to #security-help as a P2 incident.
- Screenshots of customer dashboards for support tickets must be cropped to remove invoice amounts and customer names unless the customer has consented in the ticket.
- Exports of Confidential data to CSV must be deleted within 30 days.

Data owners review classification of their systems during the quarterly access review.
""")

add("pol-access-review", "Quarterly Access Review Policy", "Samir Qureshi",
    "Security/Policies", "policy", "2024-09-16", r"""
# Quarterly Access Review

Owner: Samir Qureshi (Security Engineering). Required for SOC 2 Type II control CC6.2 and PCI DSS requirement 7.

Every quarter, system owners confirm that only the right people can access their systems. The review runs in the first two weeks of January, April, July and October.

**In scope:** SSO application assignments, AWS accounts, Kubernetes cluster-admin bindings, Quarry roles (`analyst`, `finance_reader`, `pii_reader`, `admin`), Tollgate admin console, Ledger production database, Strongbox policies, GitHub organisation owners and Beacon admins.

**Process**
1. On the first working day of the quarter, the Access Review bot opens one Tracker ticket per system in the SEC project (for example SEC-1184 for Quarry) with an export of current access.
2. The system owner marks each account keep / remove / change within 10 working days. "Keep" requires a reason for privileged roles.
3. IT or the platform team removes access within 3 working days of the review; the ticket links the change.
4. Security samples 10% of "keep" decisions and checks them against the HR roster.
5. Evidence (exports, decisions, removal timestamps) is attached to the ticket and kept for 3 years.

**Leavers and movers** are handled continuously by the offboarding runbook and are not a substitute for this review. Any account belonging to a leaver found during the review is treated as a finding and reported to Security within 24 hours.

Late reviews are escalated to the owner's director after 15 working days.
""")

add("pol-change-management", "Production Change Management Policy", "Callum Reid",
    "Engineering/Policies", "policy", "2024-10-28", r"""
# Production Change Management

Owner: Callum Reid (Platform Engineering). Approved by Hannah Voss (CTO).

All changes to production go through Shipyard (application deploys) or the Terraform pipeline in the `infra-live` repository (infrastructure, DNS, IAM). Manual changes with the console or `kubectl edit` are only allowed during an incident and must be written up in the incident channel.

## Standard changes
Application deploys that pass CI and go through Shipyard's canary stages (1% → 10% → 50% → 100%) are pre-approved. One approving code review is required; two for Tollgate, Gatehouse and anything touching money movement.

## Normal changes
Database schema migrations on the Ledger primary, DNS changes, network/firewall rules, and changes to Strongbox policies need a change ticket (CHG) in Tracker with a rollback plan, an owner and a planned window. They are reviewed at the Tuesday change review or asynchronously by two senior engineers.

## Emergency changes
The incident commander may approve emergency changes during a P1 or P2. A CHG ticket is created retroactively within one working day.

## Change freezes
- **Month-end freeze:** the last two working days of each month and the first working day of the next, for Ledger and Quarry finance pipelines (Finance is closing the books).
- **December freeze:** from the third Monday of December to the first Monday of January, for all customer-facing systems.
During a freeze, only fixes for P1/P2 incidents and pre-approved security patches are deployed. Exceptions need approval from the VP Engineering (Priya Raman).

## Evidence
Shipyard and the Terraform pipeline keep an audit log of who deployed what and when. Do not bypass them: the auditors sample 25 changes per quarter.
""")

add("pol-home-office", "Home Office Equipment Policy", "Rafael Mendes",
    "Finance/Policies", "policy", "2023-07-14", r"""
# Home Office Equipment Policy

Every new employee gets a one-off **home office allowance of £400** (€450 in Portugal, CA$650 in Canada) to spend on a desk, chair, monitor, headset or lighting. After two years you can claim a **refresh allowance of £200** every two years.

How it works:
- Buy the items yourself and claim in Expensa under the category "Home office". Attach the receipt and a photo of the setup is not required.
- Items over £150 each remain company property for 24 months. If you leave within that time, you may keep them for the depreciated value or return them.
- Laptops, docks, keyboards and mice are supplied by IT through the IT portal, not through this allowance.
- Ergonomic assessments are available on request through People Ops; where an assessment recommends specialist equipment (for example a sit-stand desk for a medical reason), it is paid outside the allowance.

Not covered: internet bills, electricity, furniture for other rooms, decorative items.
""")

add("pol-parental-leave", "Parental Leave Policy", "Sofia Brandt",
    "HR/Policies", "policy", "2024-04-02", r"""
# Parental Leave Policy

Fernwick supports all parents, however they become parents: birth, adoption or surrogacy. This policy tops up statutory entitlements.

**Primary caregiver:** 26 weeks at full pay, then statutory pay for the remainder of statutory leave (up to 52 weeks in the UK). **Secondary caregiver:** 12 weeks at full pay, which can be taken in up to three blocks within the first year.

Eligibility: 6 months of continuous service by the expected week of birth or placement. People with less service receive statutory pay only, plus 2 extra weeks at full pay.

**Keeping in touch:** up to 10 optional paid keeping-in-touch days. Nobody should contact you about work during leave unless you have agreed to it.

**Returning:** a phased return over 4 weeks at full pay working 60% hours in weeks 1-2 and 80% in weeks 3-4. Your manager and People Ops will meet you two weeks before return to plan handover. If you were on an on-call rotation, you re-join only after one shadow week.

Pregnancy-related appointments and adoption meetings are paid time off and do not reduce PTO.

To apply, tell your manager and submit the PeopleHub "Parental leave" form at least 15 weeks before the expected date (or as soon as possible for adoption). Questions: people@fernwick.example.
""")

add("pol-infosec", "Information Security Policy", "Hiroshi Tanabe",
    "Security/Policies", "policy", "2025-03-24", r"""
# Information Security Policy

Version 4.2 · Owner: Hiroshi Tanabe (Head of Security) · Approved by the Security Council on 18 March 2025 · Next review March 2026

## 1. Purpose
Fernwick Labs processes invoices and payments for more than 40,000 small businesses. Our customers trust us with their money, their customers' personal data and their cardholder data. This policy is the top-level statement of how we protect that information. It is supported by topic policies (Acceptable Use and Password, Data Classification, Access Review, Vendor Security Review, Production Change Management) and by the standards and runbooks referenced below. It is reviewed every year and after any P1 security incident.

## 2. Scope
This policy applies to all employees, contractors, interns and third parties with access to Fernwick systems, to all company-managed devices, and to all production and corporate systems including Ledger, Fernwick Pay (Tollgate), Gatehouse, Quarry, Shipyard and our SaaS tools.

## 3. Roles and responsibilities
- **Security Council** (CTO Hannah Voss as chair, Head of Security, VP Engineering, Head of IT, Legal & Compliance lead). Meets quarterly, approves policies, accepts risks above "medium".
- **Head of Security** owns this policy, the risk register, and security incident response.
- **System owners** (named per service in the service catalogue) are accountable for access reviews, patching and logging of their systems.
- **Managers** ensure their teams complete training and follow the policies.
- **Everyone** reports suspected incidents immediately to #security-help or security@fernwick.example.

## 4. Risk management
Security risks are recorded in the risk register (Tracker project RISK). Each risk has an owner, a likelihood and impact rating on a 1-5 scale, and a treatment plan. Risks scored 15 or above must be reviewed by the Security Council within 30 days. Risk acceptance is time-limited to 12 months.

## 5. Identity and access
- All staff sign in through corporate SSO with phishing-resistant MFA for privileged access (see the Acceptable Use and Password Policy).
- Access is granted by role, through groups, on a least-privilege basis, and requested through the IT portal. Direct grants to individuals are exceptions and must be ticketed.
- Production access is just-in-time: engineers request elevation with `shipyard access request --role prod-readonly` or `--role prod-admin`, which lasts 8 hours at most and is logged.
- Access is reviewed quarterly (Quarterly Access Review Policy) and removed within 24 hours when someone leaves.
- Shared accounts are prohibited except break-glass accounts, which are stored in Strongbox, alarmed in Lantern, and reviewed after every use.

## 6. Asset management
All laptops are company-owned, encrypted with full-disk encryption, enrolled in MDM and running the EDR agent. The asset inventory is kept in the IT portal. Lost or stolen devices must be reported within 1 hour so they can be wiped remotely. Production infrastructure is tagged by owner and cost centre (see Project Plover tagging standard).

## 7. Data protection
Data is handled according to its classification. Restricted data is encrypted at rest with keys managed in the cloud KMS and in transit with TLS 1.2 or higher. Cardholder data never leaves the Tollgate card vault; other services hold tokens only. Backups of the Ledger primary database are encrypted, kept for 35 days, and restore-tested every quarter by the DBA team.

## 8. Secure development
- Code changes are peer-reviewed; two approvals for services in PCI scope (Tollgate, Gatehouse).
- CI runs dependency scanning, secret scanning and static analysis. Critical findings block merge.
- Secrets are stored in Strongbox and injected at runtime; never in repositories or container images.
- New services and major changes require a design doc with a security section; the Security team reviews designs that touch authentication, payments or Restricted data.
- Penetration tests are run yearly by an external firm and after major architectural changes (for example Project Heron and Project Kestrel).

## 9. Operations security
- Vulnerabilities are fixed within: critical 7 days, high 30 days, medium 90 days. Exceptions go to the risk register.
- Production changes follow the Production Change Management Policy.
- Logs from production systems and SSO are sent to the central log platform and kept for 13 months; security-relevant alerts route to the Security on-call in Beacon.
- Clocks are synchronised via NTP so that timelines across systems line up.

## 10. Suppliers
New vendors that process Confidential or Restricted data go through the Vendor Security Review before contract signature. Existing critical vendors (card processors, cloud provider, email provider) are reassessed yearly.

## 11. Incident response
Security incidents follow the incident severity levels in SRE/Policies with a security IC from the Security rotation. Personal data breaches are assessed by Legal within 24 hours so that we can notify regulators within 72 hours where required. Cardholder data incidents are reported to our acquirers according to their rules.

## 12. Business continuity
Critical services have recovery objectives: Ledger and Tollgate RPO 5 minutes, RTO 1 hour; Gatehouse RPO 0 (stateless with replicated key store), RTO 30 minutes; Quarry RPO 24 hours, RTO 24 hours. Project Curlew adds a second region (dub1) to meet these; failover is tested twice a year.

## 13. Training
Everyone completes security awareness training within 14 days of joining and once a year afterwards, plus quarterly phishing simulations. Engineers complete secure coding training yearly. Completion is tracked in PeopleHub; managers get reminders after 30 days overdue.

## 14. Compliance and exceptions
We maintain SOC 2 Type II and PCI DSS Level 1 compliance. Exceptions to this policy are requested in Tracker (project RISK), must be approved by the Head of Security, and expire after 12 months at the latest. Breaches of this policy may result in disciplinary action.
""")

add("pol-vendor-review", "Vendor Security Review Policy", "Samir Qureshi",
    "Security/Policies", "policy", "2023-11-20", r"""
# Vendor Security Review

Before Fernwick signs a contract with a supplier that will store or process Confidential or Restricted data, or that connects to our production systems, the supplier goes through a security review. Buying a SaaS tool with a credit card does not skip this process.

1. The requester opens a VEND ticket in Tracker with the vendor name, what data they will receive, the number of users and the expected contract value.
2. Security sends the vendor our questionnaire (short form for Internal/Confidential data, full form for Restricted data) and requests the SOC 2 Type II report or ISO 27001 certificate.
3. Security rates the vendor Low / Medium / High risk within 10 working days of receiving the answers. High risk vendors need Security Council approval.
4. Legal adds our Data Processing Agreement if personal data is involved.
5. IT sets up SSO for the tool. Tools that cannot do SSO need an exception.

Reviews are repeated every year for High risk vendors and every two years for Medium. Typical lead time is three weeks, so plan ahead: procurement will not issue a PO for a tool without a closed VEND ticket.
""")

add("pol-code-review", "Code Review Guidelines", "Grace Nakamura",
    "Engineering/Policies", "policy", "2024-08-19", r"""
# Code Review Guidelines

These are the expectations for pull requests across Fernwick engineering. They are policy for repositories in PCI scope (tollgate, gatehouse, strongbox-config) and strong recommendations elsewhere.

**Authors**
- Keep PRs under about 400 changed lines. Split refactors from behaviour changes.
- The description says what changed, why, how it was tested, and links the Tracker ticket (e.g. PAY-812). Include screenshots for UI changes.
- Feature work behind a Semaphore flag should name the flag and default value.
- Schema migrations come in a separate PR and follow the expand/contract pattern.

**Reviewers**
- First response within one working day. If you cannot review, say so and suggest someone else.
- Review for correctness, security, operability (logs, metrics, alerts) and tests before style. Style is the linter's job.
- Prefix optional comments with "nit:". Anything without "nit:" is expected to be resolved or discussed.
- Approve when it is good enough to ship, not when it is how you would have written it.

**Approvals**
- One approval for most repositories. Two approvals for PCI-scope repositories and for changes to CI/CD pipelines, IAM or Terraform in `infra-live`.
- Authors may not approve their own PRs, and admins may not bypass branch protection except during an incident, which must be noted in the incident channel.
""")

add("pol-expense-general", "Expenses and Corporate Card Policy", "Rafael Mendes",
    "Finance/Policies", "policy", "2024-02-26", r"""
# Expenses and Corporate Card Policy

This policy covers day-to-day expenses that are not travel (for travel see the Travel Expense Policy). It applies to everyone who spends company money.

**Corporate cards** are issued to managers, office managers and people who regularly buy software or events. Monthly limit £2,000 unless Finance agrees otherwise. Every card transaction must be matched with a receipt in Expensa within 14 days; unmatched transactions after 30 days freeze the card.

**Software purchases** under £100 per month can be bought on a card if the vendor has passed the Vendor Security Review or handles only Public data. Anything larger goes through procurement.

**Team events:** £40 per person per quarter for team socials, £75 per person for the yearly offsite dinner. Pool budgets across the team, not across quarters.

**Learning:** books and online courses up to £300 per year without pre-approval; conferences need manager approval.

**Gifts to customers** up to £50 per person per year. Record anything above £25 in the gifts register.

Do not split a purchase to stay under an approval limit. Misuse of a corporate card is a disciplinary matter. Finance publishes a monthly report of out-of-policy spend to department heads.
""")

# ---------------------------------------------------------------------------
# Runbooks
# ---------------------------------------------------------------------------

VPN_SETUP = add(
    "rb-vpn-setup", "VPN Setup Guide (Fernwick Connect)", "Aoife Brennan",
    "IT/Runbooks", "runbook", "2024-10-03", r"""
# VPN Setup Guide – Fernwick Connect

Fernwick Connect is our corporate VPN, based on WireGuard. You need it to reach internal tools (Quarry, Lantern, Shipyard UI, the IT portal) from outside the office and on any public Wi-Fi. The gateway is `vpn.corp.fernwick.internal` and routes only internal traffic (split tunnel).

## macOS
1. Open Self Service (the MDM app catalogue) and install **Fernwick Connect 3.x**. Do not download WireGuard from the App Store; the managed client adds posture checks.
2. Launch Fernwick Connect from the menu bar and click **Sign in**. Your browser opens the SSO page.
3. Sign in with your Fernwick email and approve the MFA prompt.
4. The client downloads your device profile. The icon turns green when connected.
5. Test: open https://lantern.corp.fernwick.internal – it should load without a certificate warning.

## Windows
1. Install Fernwick Connect from Company Portal.
2. Same sign-in flow as macOS. Allow the network extension if Windows asks.

## Linux (engineering laptops only)
```
sudo apt install fernwick-connect
fwconnect login
fwconnect up
fwconnect status
```

## Troubleshooting
- **"Device not compliant"**: your OS or EDR agent is out of date. Run updates and try again after 15 minutes.
- **Connected but internal sites do not load**: run `fwconnect status` (or click Diagnostics) and check DNS shows `10.20.0.2`. If not, disconnect, reconnect, and flush DNS (`sudo dscacheutil -flushcache` on macOS).
- **Hotel Wi-Fi blocks the VPN**: switch the transport to TCP/443 in Settings > Advanced.
- Still stuck: open an IT ticket at help.fernwick.internal (category "VPN") or post in #it-help with the output of Diagnostics.
""")

add("rb-vpn-setup-sales", "VPN Setup Guide (copy for Sales team)", "Chloe Marchetti",
    "Sales/Onboarding", "runbook", "2025-01-13", rep(
        VPN_SETUP,
        ("# VPN Setup Guide – Fernwick Connect",
         "# VPN Setup Guide – Fernwick Connect\n\n_Copied from IT/Runbooks for the Sales onboarding pack. The IT page is the source of truth; check it if something here looks out of date._"),
        ("You need it to reach internal tools (Quarry, Lantern, Shipyard UI, the IT portal)",
         "You need it to reach internal tools (the CRM admin pages, Quarry dashboards, the IT portal)"),
        ("5. Test: open https://lantern.corp.fernwick.internal – it should load without a certificate warning.",
         "5. Test: open the IT portal at https://help.fernwick.internal – it should load without a certificate warning."),
        ("""## Linux (engineering laptops only)
```
sudo apt install fernwick-connect
fwconnect login
fwconnect up
fwconnect status
```

""", ""),
        ("run `fwconnect status` (or click Diagnostics)", "click Diagnostics"),
        ("- **Hotel Wi-Fi blocks the VPN**", "- **Customer site or hotel Wi-Fi blocks the VPN**"),
    ))

add("rb-gatehouse-key-rotation", "Runbook: Rotating Gatehouse token signing keys", "Jonas Lindqvist",
    "Engineering/Runbooks/Identity", "runbook", "2025-05-28", r"""
# Rotating Gatehouse token signing keys

Owner: Identity team (Jonas Lindqvist). Written after INC-2025-041 (SSO login outage, 17 April 2025). Since Heron phase 2, rotation is automated every 30 days by the `gatehouse-keyrotator` job; use this runbook for a **manual or emergency rotation** (suspected key compromise, failed automatic rotation).

Gatehouse signs session and ID tokens with ES256 keys stored in Strongbox at `secret/gatehouse/signing/<kid>`. Verifiers (the API gateway, Ledger, Tollgate, the mobile BFF) fetch the JWKS from `https://auth.fernwick.example/.well-known/jwks.json` and cache it for 10 minutes.

**The golden rule: publish first, sign later.** A new key must be in the JWKS for at least 20 minutes (two cache lifetimes) before Gatehouse starts signing with it. Skipping this step is exactly what caused INC-2025-041.

## Steps
1. Announce in #identity and #incidents (if emergency) that you are rotating.
2. Request prod access: `shipyard access request --role prod-admin --reason "gatehouse key rotation"`.
3. Generate and publish the new key without activating it:
   `gatehousectl keys create --alg ES256 --state published`
   Note the new `kid` in the output.
4. Verify it is served: `curl -s https://auth.fernwick.example/.well-known/jwks.json | jq '.keys[].kid'` – the new kid must appear. Check from both regions (`--resolve` to lon1 and dub1 edge IPs, see the DNS runbook).
5. Wait 20 minutes. Watch the Lantern dashboard "Gatehouse / JWKS fetches" – all verifier fleets should show a fetch after publish time.
6. Activate: `gatehousectl keys activate <kid>`. The old key moves to state `retiring` and stays in the JWKS for 24 hours so that existing tokens keep validating.
7. Watch `gatehouse_token_verify_failures_total` for 15 minutes. It should stay below 5/min.
8. After 24 hours the rotator removes the retiring key. In an emergency compromise, remove it immediately with `gatehousectl keys revoke <old-kid>` – this logs out every user, so get IC approval first.

## Rollback
If verify failures spike after activation: `gatehousectl keys activate <old-kid>` (allowed while it is in `retiring`), then investigate which verifier has a stale JWKS.
""")

add("rb-gatehouse-login-failures", "Triage: customer login failures", "Jonas Lindqvist",
    "Engineering/Runbooks/Identity", "runbook", "2025-06-05", r"""
# Triage: customer login failures

Alert: `GatehouseLoginSuccessRateLow` (login success rate below 92% over 5 minutes) or support reports "can't log in".

1. Open Lantern dashboard **Gatehouse / Overview**. Check login success rate split by method: password, Google, Microsoft, customer SAML SSO.
   - Only one method failing → likely an external IdP problem. Check the provider status pages and `gatehouse_idp_errors_total{idp=...}`.
   - All methods failing → Gatehouse itself or its dependencies.
2. Check recent changes: `shipyard history gatehouse --since 2h` and the Semaphore flag audit log for flags prefixed `auth.`.
3. Check token verification: a spike in `gatehouse_token_verify_failures_total` after a successful login means verifiers reject our tokens – see the key rotation runbook (this was INC-2025-041).
4. Check the session store (Redis cluster `gatehouse-sessions`): `redis-cli -h gatehouse-sessions.lon1 info stats | grep rejected_connections`.
5. If a deploy happened in the last 2 hours and the failure started after it, roll back first, investigate later: `shipyard rollback gatehouse --to previous`.
6. Declare a P1 if success rate is below 80% for more than 10 minutes; otherwise P2.

Useful queries:
- Failures by error code: `sum by (code) (rate(gatehouse_login_failures_total[5m]))`
- Top affected tenants: Quarry view `auth.login_failures_hourly` (up to 1 hour delay).

Escalation: Identity team primary in Beacon, then Jonas Lindqvist.
""")

add("rb-tollgate-latency", "Runbook: Tollgate high payment latency", "Adaeze Okafor",
    "Engineering/Runbooks/Payments", "runbook", "2025-12-15", r"""
# Tollgate high payment latency

Alerts: `TollgateAuthorizeP99High` (p99 of `POST /v3/payments/authorize` above 1.5 s for 5 min) and `TollgateAuthorizeP99Critical` (above 3 s, pages as P1).

Updated after INC-2025-077 (6 August 2025).

## 1. Is it us or the processor?
Open Lantern **Tollgate / Latency breakdown**. The stacked graph splits time into: Tollgate internal, idempotency store, risk check, and processor round trip (Meridian Acquiring or ClearArc).
- Processor segment dominating → check the processor status page and #payments-partners. If Meridian p99 is above 2 s for 10 minutes, fail over to ClearArc (see "Switching card processors").
- Idempotency store dominating → step 2.
- Internal dominating → step 3.

## 2. Idempotency store
Since Project Kestrel phase 3 the idempotency store is Redis (`tollgate-idem`); before that it was the `idempotency_keys` table on the payments PostgreSQL cluster.
- `redis-cli -h tollgate-idem.lon1 --latency` should show under 2 ms.
- Check connection pool saturation: `tollgate_db_pool_in_use / tollgate_db_pool_max`. Above 0.9 means queries are queueing – the INC-2025-077 pattern.
- Check for long-running queries: `SELECT pid, now()-query_start, query FROM pg_stat_activity WHERE state <> 'idle' ORDER BY 2 DESC LIMIT 10;`

## 3. Tollgate itself
- Recent deploy? `shipyard history tollgate --since 3h`. Roll back if the timing matches.
- CPU throttling: Lantern panel "Pods / throttled seconds". Scale out with `shipyard scale tollgate --replicas +6` (max 48 per region).
- GC pauses (Go): check `go_gc_duration_seconds` p99.

## Communication
P1 latency affects checkout for every Fernwick Pay merchant. Post in #incidents, page the Payments on-call, and ask Customer Success to prepare a status page note if it lasts over 15 minutes.
""")

add("rb-processor-failover", "Switching card processors (Meridian to ClearArc)", "Eitan Shapiro",
    "Engineering/Runbooks/Payments", "runbook", "2024-12-09", r"""
# Switching card processors

Fernwick Pay routes card authorisations to **Meridian Acquiring** (primary, about 85% of volume) and **ClearArc** (secondary). Routing is controlled by the Semaphore flag `payments.processor_routing`.

Switch when: Meridian error rate above 5% for 5 minutes, Meridian p99 above 2 s for 10 minutes, or Meridian announces an outage.

1. Get IC approval in the incident channel (this changes fees: ClearArc costs about 0.04 percentage points more per transaction).
2. Check ClearArc health on Lantern **Tollgate / Processors** – error rate should be under 1%.
3. Shift gradually:
   `semaphore set payments.processor_routing '{"meridian": 50, "cleararc": 50}' --reason INC-XXXX`
   wait 5 minutes, then
   `semaphore set payments.processor_routing '{"meridian": 0, "cleararc": 100}' --reason INC-XXXX`
4. Note: American Express cards are only enabled on Meridian. During a full failover Amex transactions will fail with `processor_unavailable`; Customer Success should be told.
5. Confirm authorisation success rate recovers above 97%.
6. Switch back the same way once Meridian has been healthy for 30 minutes. Post the times in the incident channel so Finance can reconcile fees.

Contacts: Meridian 24/7 support line is in Strongbox at `secret/payments/partners/meridian/support`; account manager Gwen Abbott. ClearArc escalations go through their partner portal.
""")

add("rb-shipyard-deploy", "How to deploy a service with Shipyard", "Callum Reid",
    "Engineering/Runbooks/Platform", "runbook", "2023-08-21", r"""
# Deploying a service with Shipyard

Shipyard is our internal deploy tool. It builds nothing: it takes a container image produced by CI and rolls it out to Kubernetes through canary stages, checking SLO metrics in Lantern at each stage.

## Prerequisites
- Your service has a `shipyard.yaml` in the repo root (owner team, Beacon rotation, canary SLO checks).
- CI on the main branch has produced an image tagged with the commit SHA.
- Install the CLI: `brew install fernwick/tap/shipyard` and run `shipyard login` (SSO).

## Deploy
```
shipyard deploy ledger-api --version 3f9c2ab
```
Shipyard will:
1. Deploy to staging and run smoke tests (about 4 minutes).
2. Start the production canary at 1% of traffic for 10 minutes.
3. Promote to 10%, 50% and 100%, holding 10 minutes at each stage while comparing error rate and p99 latency with the baseline pods.
4. Halt and roll back automatically if the canary is worse than baseline beyond the thresholds in `shipyard.yaml`.

Follow progress: `shipyard status ledger-api` or the Shipyard UI at https://shipyard.corp.fernwick.internal.

## Tips
- Deploys are blocked during change freezes unless you pass `--freeze-exception CHG-1234` with an approved ticket.
- `--skip-canary` is only available to the incident commander during an incident.
- Deploys start only between 08:00 and 17:00 UK time Monday–Thursday and until 12:00 on Fridays, unless your team has a different window in `shipyard.yaml`.
""")

add("rb-shipyard-rollback", "Rolling back a deploy with Shipyard", "Callum Reid",
    "Engineering/Runbooks/Platform", "runbook", "2024-08-05", r"""
# Rolling back a deploy with Shipyard

Roll back first, debug later. If an alert fires within two hours of a deploy to the affected service, a rollback is the default first action.

1. See what changed: `shipyard history <service> --since 6h`
2. Roll back to the previous release: `shipyard rollback <service> --to previous`
   or to a specific one: `shipyard rollback <service> --to 3f9c2ab`
   Rollbacks skip the canary and go straight to 100% in about 3 minutes.
3. Pin the service so nobody redeploys the bad version: `shipyard pin <service> --reason "INC-2024-044"`
4. Check the config bundle too. Since August 2024 Shipyard versions config bundles separately from images: `shipyard config history <service>`. A bad config can be rolled back with `shipyard config rollback <service>`. (In INC-2024-044 an image rollback did not help because the bad change was in config.)
5. Unpin when the fix is merged: `shipyard unpin <service>`.

Database migrations are not rolled back by Shipyard. If the release included a migration, check the migration was backward compatible (expand/contract); if not, talk to the DBA on-call (Dmitri Sokolov's team) before rolling back.
""")

add("rb-quarry-backfill", "Backfilling a Quarry table", "Maribel Ocampo",
    "Data/Runbooks", "runbook", "2025-06-30", r"""
# Backfilling a Quarry table

Use this when a Sluice pipeline failed or loaded bad data and a date range must be reloaded. Typical case: the nightly `ledger_events` load after INC-2024-008.

1. Find the pipeline and affected partitions: `sluice runs list --pipeline ledger_events --status failed --since 7d`
2. Pause downstream dbt models so dashboards do not refresh on partial data: `sluice pause --downstream-of ledger_events`
3. Run the backfill in chunks of at most 3 days to stay within the Quarry warehouse's memory:
   `sluice backfill ledger_events --start 2024-02-10 --end 2024-02-12 --warehouse LOAD_L`
4. Check row counts against the source: `sluice verify ledger_events --date 2024-02-11` (compares with the Kafka offsets and the Ledger replica). Differences above 0.1% fail the check.
5. Resume downstream models: `sluice resume --downstream-of ledger_events` and trigger `dbt build --select ledger_events+`.
6. Post in #data-status which dates were reloaded and when dashboards will be fresh.

Cost note: a LOAD_L warehouse costs about 16 credits per hour. Backfills of more than 30 days need approval from the data platform lead (Maribel Ocampo) because of Project Plover budgets.
""")

QUARRY_ACCESS_V1 = add(
    "rb-quarry-access-2024", "Requesting access to Quarry (2024)", "Kwame Mensah",
    "Data/Runbooks", "runbook", "2024-04-08", r"""
# Requesting access to Quarry

Quarry is the Fernwick data warehouse. Access is granted by role.

| Role | What you can see | Approver |
|---|---|---|
| `analyst` | Modelled marts (finance, product, support), no PII | Your manager |
| `finance_reader` | Revenue and billing marts incl. customer names | Rafael Mendes |
| `pii_reader` | Raw zones with tokenised personal data | Data platform lead + Security |
| `admin` | Everything | Data platform lead |

## Steps
1. Open a ticket in the IT portal: category "Data access" > "Quarry".
2. Choose the role and write the business reason (e.g. "weekly churn report for CS").
3. Approval happens in the ticket. Expect 1–2 working days; `pii_reader` takes up to 5.
4. Once approved, log in at https://quarry.corp.fernwick.internal with SSO. The VPN is required.
5. For SQL clients, create a personal access token under Profile > Tokens (valid 90 days).

Access is reviewed quarterly. Unused accounts (no login for 60 days) are disabled.
""")

add("rb-quarry-access-2025", "Requesting access to Quarry (2025)", "Kwame Mensah",
    "Data/Runbooks", "runbook", "2025-07-07", rep(
        QUARRY_ACCESS_V1,
        ("# Requesting access to Quarry",
         "# Requesting access to Quarry\n\n_Updated July 2025 after the Osprey cutover. The old reporting database (reportdb) is read-only and will be switched off on 30 September 2025._"),
        ("| `finance_reader` | Revenue and billing marts incl. customer names | Rafael Mendes |",
         "| `finance_reader` | Revenue and billing marts incl. customer names | Rafael Mendes |\n| `payments_reader` | Tollgate payment and payout marts (no card data) | Adaeze Okafor |"),
        ("1. Open a ticket in the IT portal: category \"Data access\" > \"Quarry\".",
         "1. Request the role in the Access app (access.corp.fernwick.internal > Quarry). IT portal tickets for Quarry are no longer accepted."),
        ("Approval happens in the ticket.", "Approval happens in the Access app and in chat."),
        ("The VPN is required.", "The VPN is not required since May 2025; device compliance is checked at SSO instead."),
        ("(valid 90 days)", "(valid 30 days; service accounts use key-pair auth)"),
        ("no login for 60 days", "no login for 45 days"),
    ))

add("rb-dns-change", "Making a DNS change", "Oluwaseun Adeyemi",
    "SRE/Runbooks", "runbook", "2025-10-27", r"""
# Making a DNS change

All public and internal DNS zones (`fernwick.example`, `corp.fernwick.internal`) are managed in Terraform in the `infra-live` repository under `dns/`. Console edits are disabled except for the break-glass role. This runbook was rewritten after INC-2024-112.

1. Create a branch and edit the zone file, e.g. `dns/fernwick.example/api.tf`.
2. Lower the TTL first if you are changing an existing record: set TTL to 60 seconds in a separate PR, apply it, and wait for the old TTL to expire (check with `dig +noall +answer api.fernwick.example`).
3. Open the PR. The pipeline runs `terraform plan` and the **dns-lint** check, which fails if a CNAME or alias targets a load balancer that is not in the live inventory (added after INC-2024-112).
4. Get two approvals, one from SRE. A CHG ticket is required for production zones (Production Change Management Policy).
5. Merge; the pipeline applies. Verify from outside our network:
   `dig @1.1.1.1 api.fernwick.example` and `dig @8.8.8.8 api.fernwick.example`
   and through the synthetic checks in Lantern ("Edge / DNS resolution").
6. Once stable for a day, restore the normal TTL (300 seconds for API records, 3600 for others).

Email records (SPF, DKIM, DMARC) for `fernwick.example` also live here. Any change to SPF must be reviewed by the Messaging team as well; see INC-2025-093.

Rollback: revert the PR and let the pipeline apply. With a 60 second TTL, most resolvers recover within 2–3 minutes.
""")

add("rb-kafka-disk", "Kafka broker disk pressure", "Oluwaseun Adeyemi",
    "SRE/Runbooks", "runbook", "2025-03-10", r"""
# Kafka broker disk pressure

Alert: `KafkaBrokerDiskUsageHigh` (above 80%) and `KafkaBrokerDiskUsageCritical` (above 90%, pages). Cluster: `events-prod` (6 brokers per region).

At 100% a broker stops accepting writes and partitions go offline, as in INC-2025-006.

1. Find the broker and the largest topics:
   `kafkactl describe broker <id>` and `kafkactl topics usage --broker <id> --top 10`
2. Check for a consumer lag explosion – a stuck consumer does not cause disk use by itself, but a topic with retention by size and a producer in a loop does. Look at "Events / bytes in per topic" in Lantern.
3. Short-term relief: lower retention on the largest non-critical topic, e.g.
   `kafkactl alter topic analytics.clickstream --config retention.ms=43200000` (12 hours).
   Never lower retention on `ledger.events` or `payments.events` below 72 hours without asking Data and Payments – Sluice and Tollgate reconciliation read from them.
4. If usage is still above 90%, expand the volume: `shipyard infra resize kafka-events-<id> --size +500Gi` (EBS online resize, takes about 10 minutes).
5. Once stable, rebalance partitions with Cruise Control (UI at cruise.corp.fernwick.internal) in "throttled" mode.

Tiered storage (see design doc "Kafka tiered storage") keeps only 24 hours on local disk for topics where it is enabled. Check `remote.storage.enable` when triaging.
""")

add("rb-postgres-failover", "Ledger primary database failover", "Dmitri Sokolov",
    "Engineering/Runbooks/Databases", "runbook", "2024-01-22", r"""
# Ledger primary database failover

The Ledger primary is a PostgreSQL 15 cluster (`ledger-pg`) managed by Patroni, with one synchronous replica in another availability zone and two asynchronous replicas (one feeds reportdb/Quarry CDC).

**Automatic failover** happens if the leader is unreachable for 30 seconds. You usually only need to verify it. **Manual switchover** is for planned maintenance.

Check cluster state:
```
patronictl -c /etc/patroni/ledger.yml list
```

Planned switchover (outside the month-end freeze, with a CHG ticket):
```
patronictl -c /etc/patroni/ledger.yml switchover --master ledger-pg-1 --candidate ledger-pg-2 --scheduled now
```
Expect 5–15 seconds of write unavailability. Ledger API retries writes for up to 20 seconds.

After any failover:
1. Confirm PgBouncer points at the new leader: `psql -h pgbouncer.ledger -c "SHOW SERVERS;"`.
2. Check replication lag on the remaining replicas is under 1 MB.
3. Check the CDC slot for Quarry (`quarry_cdc`) is active on the new leader; Patroni recreates it but Sluice must be restarted: `sluice restart ledger_cdc`.
4. Post in #incidents even if customers were not affected.

In INC-2023-031 the automatic failover worked but PgBouncer kept the old leader in its pool for 11 minutes; the pgbouncer health check interval is now 5 seconds.
""")

add("rb-laptop-reimage", "Reimaging a laptop", "Aoife Brennan",
    "IT/Runbooks", "runbook", "2023-06-12", r"""
# Reimaging a laptop (IT staff)

Use when a laptop is being reassigned, has malware, or is badly broken.

1. Check the ticket has manager approval if the user's data will be lost. Users are responsible for their own files; Google Drive and GitHub hold most work data.
2. In the MDM console, find the device by serial number and choose **Wipe device**. For Macs with Apple silicon, confirm the activation lock is managed.
3. Boot into recovery (hold the power button on Apple silicon) and reinstall the current approved macOS version (see IT/Supported OS versions).
4. On first boot, select the Fernwick Wi-Fi; automated enrolment installs the MDM profile, EDR agent, Fernwick Connect and the standard apps. This takes about 40 minutes.
5. If the laptop goes to a new person, change the assigned user in the asset inventory in the IT portal and print a new asset label.
6. Close the ticket with the serial number and the time of wipe (needed for audit).

Windows laptops: use Autopilot reset from the device page instead of step 2–3.
""")

add("rb-new-hire-accounts", "Provisioning accounts for a new hire", "Deepa Venkatesan",
    "IT/Runbooks", "runbook", "2024-02-05", r"""
# Provisioning accounts for a new hire

Triggered by the PeopleHub "new starter" webhook, which opens an IT ticket 10 working days before the start date.

1. **Identity**: the account is created automatically in the IdP from PeopleHub (firstname.lastname@fernwick.example). Check it exists and has the right department and manager.
2. **Groups**: add the department group (e.g. `eng-payments`, `sales-emea`). Group membership drives SSO app assignments, chat channels and GitHub teams. Do not assign apps directly.
3. **Laptop**: pick from stock (MacBook Pro 14" for engineering and data, MacBook Air 13" for everyone else), assign in the asset inventory, and ship with tracked courier 4 working days before the start date. Lisbon and Toronto starters collect from the office.
4. **Engineering extras**: GitHub org invite (requires SSO), Shipyard read-only role, Lantern viewer. Production access is not granted on day one; it is requested by the manager after on-call training.
5. **Welcome email** to personal email with the first-day login instructions and temporary password link (valid 72 hours).
6. On the start date, the buddy walks them through MFA enrolment with a security key (issued with the laptop).

If the start date moves, update the ticket; the account stays disabled until the start date.
""")

add("rb-offboarding", "Offboarding a leaver's accounts", "Deepa Venkatesan",
    "IT/Runbooks", "runbook", "2024-02-05", r"""
# Offboarding a leaver

Required for SOC 2: access must be removed within 24 hours of the leaving time recorded in PeopleHub. For involuntary leavers, People Ops pings IT and Security directly and access is removed at the time of the meeting.

1. Suspend the IdP account (this ends SSO sessions and blocks the VPN). Revoke active Gatehouse admin sessions: `gatehousectl sessions revoke --user <email>`.
2. Remove from GitHub org, Beacon rotations, Shipyard roles and cloud IAM. The offboarding script does most of this: `itctl offboard <email> --execute`.
3. Transfer Google Drive ownership to the manager; set up email forwarding for 30 days if the manager asks.
4. Rotate any shared credentials the person could see in 1Password shared vaults (the script lists them).
5. Collect the laptop and security key. Remote employees receive a prepaid return box.
6. Record completion time in the ticket.
""")

add("rb-curlew-failover", "Regional failover: lon1 to dub1", "Tomasz Wierzbicki",
    "SRE/Runbooks", "runbook", "2026-03-16", r"""
# Regional failover (Project Curlew)

Since November 2025 Fernwick runs customer-facing services in two regions: **lon1** (primary) and **dub1** (warm standby taking 10% of read traffic). Use this runbook when lon1 is degraded beyond what a single-service rollback can fix. Decision owner: the incident commander, with the VP Engineering informed.

## Pre-checks (5 minutes)
1. Confirm dub1 health on Lantern **Curlew / Region health**: all services green, Ledger replica lag under 5 seconds, Tollgate idempotency Redis replicated.
2. Confirm it is not a global issue (e.g. card processor outage, external IdP) – failing over will not help.

## Failover
1. Freeze deploys: `shipyard freeze --all --reason "regional failover"`.
2. Promote the Ledger database in dub1: `patronictl -c /etc/patroni/ledger-dub1.yml failover --candidate ledger-pg-dub1-1 --force`. Expect up to 5 seconds of data loss (RPO) for asynchronous writes.
3. Promote the payments database the same way (`payments-dub1.yml`).
4. Shift traffic: `edgectl weights set --region lon1=0 --region dub1=100`. Global load balancer weights take effect in about 1 minute; DNS is not changed (lesson from the March 2026 test, INC-2026-022).
5. Scale dub1: `shipyard scale --region dub1 --profile full`.
6. Update the status page.

## Failback
Only after lon1 has been healthy for 2 hours and the databases have been rebuilt as replicas of dub1. Reverse steps 2–5 during low traffic (after 22:00 UK), with a CHG ticket.
""")

add("rb-oncall-handoff", "On-call handoff checklist", "Oluwaseun Adeyemi",
    "SRE/Runbooks", "runbook", "2026-01-12", r"""
# On-call handoff checklist

Every Monday 10:00 UK time (Tuesday from January 2026), outgoing and incoming primaries meet for 15 minutes.

Outgoing primary prepares in the #oncall-handoff thread:
- [ ] Open incidents and their state (links to INC channels).
- [ ] Pages received this week with counts by alert name. Flag anything that paged more than 3 times – it is a candidate for tuning.
- [ ] Silences that are still active in Lantern and when they expire.
- [ ] Planned changes next week (CHG tickets, migrations, processor maintenance windows, Curlew tests).
- [ ] Anything weird you did not have time to investigate.

Incoming primary:
- [ ] Check Beacon shows you as primary, and trigger a test page: `beacon test-page --me`.
- [ ] Check VPN and prod access request work from your laptop.
- [ ] Read the last two postmortems if you have not.

Noisy alerts go into the weekly SRE ops review agenda.
""")

add("rb-tls-renewal", "TLS certificate renewal", "Oluwaseun Adeyemi",
    "SRE/Runbooks", "runbook", "2024-09-09", r"""
# TLS certificate renewal

Most certificates renew automatically via cert-manager (ACME) in Kubernetes. This runbook covers the ones that do not:

| Certificate | Where | Renewal |
|---|---|---|
| `status.fernwick.example` | status page provider | manual upload |
| `vpn.corp.fernwick.internal` | VPN gateways | internal CA, manual |
| Customer SAML signing cert | Gatehouse | yearly, customers must be told 30 days ahead |

Lantern alerts `CertExpiringSoon` at 30 days and pages at 7 days for every certificate in the inventory (`certs/inventory.yaml` in `infra-live`). If a certificate is not in the inventory, it is not monitored – that is how INC-2023-019 and INC-2024-071 happened.

Manual renewal:
1. Generate a CSR: `openssl req -new -newkey rsa:2048 -nodes -keyout status.key -out status.csr -subj "/CN=status.fernwick.example"`
2. Issue through the public CA account (credentials in Strongbox `secret/sre/public-ca`) or `fwca issue --csr vpn.csr --profile vpn-gateway` for internal.
3. Install, verify with `openssl s_client -connect status.fernwick.example:443 -servername status.fernwick.example | openssl x509 -noout -dates`.
4. Update the expiry date in the inventory file and open a ticket for the next renewal 11 months out.
""")

# ---------------------------------------------------------------------------
# Design docs
# ---------------------------------------------------------------------------

add("dd-heron-gatehouse-v2", "Project Heron: Gatehouse v2 identity platform", "Jonas Lindqvist",
    "Engineering/Design Docs/Identity", "design_doc", "2024-10-14", r"""
# Project Heron – Gatehouse v2 identity platform

Status: **Approved** (architecture review 10 October 2024) · Author: Jonas Lindqvist · Reviewers: Grace Nakamura, Samir Qureshi, Callum Reid · Tracker epic: GATE-1000

## 1. Summary
Gatehouse is the service that signs users in to Fernwick Ledger, Fernwick Pay and the mobile app. Gatehouse v1 was written in 2018 as part of the Ruby monolith. Project Heron replaces it with Gatehouse v2: a standalone Go service that is an OpenID Connect (OIDC) provider, issues short-lived signed tokens verified locally by every service, supports SAML single sign-on (SSO) for customers on the Business plan, and moves staff sign-in for internal tools to the same platform.

## 2. Background and problems with v1
- **Shared-secret tokens.** v1 issues HS256 JWTs signed with one shared secret that every service holds. Any service that leaks the secret can mint tokens for any user. Rotating the secret requires a coordinated deploy of nine services and has not been done since 2021 (finding SEC-977 from the 2024 penetration test).
- **Sessions in the Ledger database.** Every authenticated request reads the `sessions` table on the Ledger primary. This is about 22% of the primary's read load and a single point of failure: the December 2023 Ledger failover (INC-2023-031) logged out every user.
- **No customer SSO.** Sales lose deals with accounting firms that require SAML SSO. Twelve open opportunities worth about £610k ARR list it as a blocker (source: CRM report, September 2024).
- **Staff tools use four different login systems.** Shipyard, Lantern and Quarry each have their own SSO integration; joiners and leavers are handled in four places.

## 3. Goals
1. Asymmetric token signing (ES256) with published keys (JWKS) and routine key rotation without coordinated deploys.
2. Sessions out of the Ledger database; Gatehouse unaffected by Ledger failovers.
3. SAML 2.0 and OIDC SSO for customer tenants, configured in the admin UI without engineering help.
4. One identity platform for customers and staff tools.
5. p99 login latency under 400 ms; availability SLO 99.95% monthly.

Non-goals: replacing the corporate IdP for staff email and laptops; passwordless login for customers (considered for 2026); SCIM provisioning for customers (phase 3, not in this document).

## 4. Design

### 4.1 Components
- **gatehouse-api** (Go): OIDC endpoints (`/authorize`, `/token`, `/userinfo`), login UI backend, SAML ACS endpoint. Stateless, and able to run in a second region once we have one.
- **Session store:** Redis cluster `gatehouse-sessions` with replicas in each AZ. Sessions hold a refresh token reference, the user id, tenant id and auth method. TTL 12 hours idle, 14 days absolute.
- **Key store:** signing keys in Strongbox (`secret/gatehouse/signing/<kid>`), loaded into memory at start-up and on change notification.
- **Tenant config:** SSO configuration per customer tenant (IdP metadata, certificate, attribute mapping) in the Gatehouse PostgreSQL database, which is small (under 1 GB) and separate from Ledger.

### 4.2 Tokens
- Access tokens: JWT, ES256, lifetime 10 minutes, audience-restricted (`ledger-api`, `tollgate`, `mobile-bff`).
- Refresh tokens: opaque, rotating on every use, stored hashed in Redis.
- Services verify access tokens locally against the JWKS at `https://auth.fernwick.example/.well-known/jwks.json`. The shared `fwauth` libraries (Go, Java, Ruby, TypeScript) cache the JWKS for 10 minutes and refetch once when they see an unknown `kid`.

### 4.3 Key rotation
Keys have states `published` → `active` → `retiring` → removed. A new key is published in the JWKS before it becomes active, and the previously active key remains in the JWKS for 24 hours after rotation. Rotation is monthly, done by the `gatehouse-keyrotator` job in phase 2; during phase 1 it is a manual operation with a runbook.

### 4.4 Customer SSO
Business-plan admins upload IdP metadata (SAML) or enter an issuer URL (OIDC) in Settings > Security. We support Microsoft Entra ID, Google Workspace, Okta and generic SAML 2.0. Users whose email domain is verified for an SSO tenant are redirected to their IdP. Admins can enforce SSO-only login; a break-glass owner account keeps password + MFA.

### 4.5 Staff SSO
Internal tools become OIDC clients of Gatehouse, which federates to the corporate IdP. Group claims come from the IdP so that access follows group membership (Quarry roles, Shipyard roles, Lantern teams).

## 5. Migration plan
- **Phase 1 (Dec 2024 – Jan 2025):** Gatehouse v2 in production for staff tools (Shipyard, Lantern, Quarry). Low risk, ~600 users.
- **Phase 2 (Feb – Mar 2025):** customer login moves to v2. Both systems run in parallel: v2 accepts v1 sessions and upgrades them at the next request. Semaphore flag `auth.gatehouse_v2_percent` ramps 1% → 10% → 50% → 100% over three weeks. Services accept both HS256 (v1) and ES256 (v2) tokens during the transition; HS256 acceptance is removed four weeks after 100%.
- **Phase 3 (Q2 2025):** customer SAML SSO general availability, SCIM in a later project.

## 6. Security considerations
- ES256 keys never leave Strongbox and the Gatehouse process memory. Strongbox audit logs every read.
- Login endpoints are rate-limited per IP and per account (10 failures in 15 minutes locks the account for 15 minutes).
- SAML responses must be signed; we reject unsigned assertions and enforce audience and recipient checks. We use a maintained library rather than writing XML signature validation ourselves.
- External penetration test of Gatehouse v2 before phase 2 (booked for February 2025).

## 7. Operations
- SLO: 99.95% of login attempts return a non-5xx response; p99 latency under 400 ms. Alerts in Lantern, pages to the Identity rotation in Beacon.
- Dashboards: Gatehouse / Overview, Gatehouse / JWKS fetches, Gatehouse / SSO tenants.
- Runbooks: "Triage: customer login failures", "Rotating Gatehouse token signing keys".

## 8. Alternatives considered
- **Buy a hosted identity provider for customers.** Quoted at roughly £190k per year at our monthly active user count, and it would add a third party in the payments login path. Rejected on cost and control, but to be revisited in 2026.
- **Keep v1 and add SAML to the monolith.** Does not fix shared-secret tokens or the Ledger dependency.

## 9. Open questions
- Should the mobile app use refresh-token rotation with device binding? (Owner: Beatriz Cordeiro, Project Wren.)
- How long do we keep v1 code after phase 2? Proposal: delete in Q3 2025.
""")

add("dd-heron-key-rotation", "Gatehouse signing key rotation: automated rotator", "Jonas Lindqvist",
    "Engineering/Design Docs/Identity", "design_doc", "2025-05-12", r"""
# Gatehouse signing key rotation – automated rotator

Status: Approved · Author: Jonas Lindqvist · Related: INC-2025-041, GATE-1212

## Context
The Heron design said that key rotation would be manual in phase 1 and automated later. On 17 April 2025 a manual rotation activated a new signing key at the same moment it was published. The API gateway cached the JWKS for 60 minutes and did not refetch on an unknown `kid`, so every token signed with the new key was rejected and customers were stuck in a login loop for 2 hours 14 minutes (INC-2025-041). This document describes the automated rotator that replaces the manual process.

## Design
`gatehouse-keyrotator` is a Kubernetes CronJob that runs daily at 03:00 UTC and moves keys through states according to age:
1. If there is no `published` key and the active key is older than 28 days, create a new ES256 key in Strongbox and set state `published`.
2. If a `published` key is older than 24 hours **and** every verifier fleet has reported fetching a JWKS containing it, activate it. The previous active key becomes `retiring`.
3. Remove `retiring` keys older than 48 hours.

Verifier confirmation comes from a new metric: each `fwauth` library reports the set of kids in its cache (`fwauth_jwks_kids{kid=...}`). The rotator queries Lantern and refuses to activate if any fleet with traffic in the last hour has not seen the new kid. It then alerts the Identity team rather than going ahead.

## Library changes
All verifiers must use `fwauth` 2.4 or later, which (a) caps JWKS cache at 10 minutes, and (b) refetches once, rate-limited to one fetch per 30 seconds, when it sees an unknown kid. The API gateway plugin, which was the one verifier not using `fwauth`, moves to it (GATE-1219).

## Rollback and emergency
`gatehousectl keys activate <kid>` can reactivate a retiring key. Emergency rotation after a compromise skips the 24-hour wait but still requires the fleet confirmation, unless the incident commander overrides with `--force`.

## Rollout
Shadow mode (log what it would do) for two weeks from 19 May, then enabled on 2 June 2025. First automatic rotation expected around 16 June.
""")

add("dd-kestrel-tollgate-v3", "Project Kestrel: Tollgate v3 payments gateway", "Grace Nakamura",
    "Engineering/Design Docs/Payments", "design_doc", "2025-02-17", r"""
# Project Kestrel – Tollgate v3 payments gateway

Status: **Approved** · Author: Grace Nakamura (Staff Engineer, Payments) · Engineering manager: Adaeze Okafor · Product: Eitan Shapiro · Epic: PAY-700

## 1. Summary
Tollgate is the service behind Fernwick Pay. It takes payment requests from Ledger (invoice payments, recurring charges) and from the hosted checkout page, checks risk, talks to card processors (Meridian Acquiring and ClearArc), and records results. Tollgate v2 is a Java service written in 2019. Project Kestrel rewrites the request path as Tollgate v3 in Go with an explicit state machine per payment, processor-independent routing, and a clearer idempotency model. Target: handle 3x current peak volume with p99 authorisation latency under 800 ms (processor time excluded: under 150 ms).

## 2. Why now
- **Volume.** Peak authorisations reached 410 per second during the 2024 end-of-quarter rush (31 December), against a tested v2 ceiling of about 520/s. Projections for 2026 are 900/s.
- **Latency.** v2 p99 is 1.1 s, of which 380 ms is Tollgate itself (thread pool contention, synchronous risk call).
- **Processor lock-in.** Meridian-specific logic is spread through v2. Adding ClearArc in 2023 took five months.
- **Incidents.** Three P2 incidents in 2024 were caused by retry storms in v2 when Meridian was slow.

## 3. Goals and non-goals
Goals: same external API (`/v3/payments/*` is already versioned), zero-downtime migration, state machine with audited transitions, processor adapters behind one interface, idempotency guaranteed for 24 hours per `Idempotency-Key`, and PCI scope unchanged (card data stays in the card vault; Tollgate v3 handles tokens only).

Non-goals: changing pricing, rewriting the card vault, payouts (handled by the separate Payouts service), new payment methods (open banking is a separate spec).

## 4. Architecture
```
Ledger / Checkout ─▶ API gateway ─▶ tollgate-v3 (Go)
                                      ├─▶ risk-svc (async pre-score, sync only above threshold)
                                      ├─▶ idempotency store
                                      ├─▶ processor adapters: meridian, cleararc
                                      └─▶ payments PostgreSQL + payments.events (Kafka)
```

### 4.1 Payment state machine
States: `created → authorising → authorised → capturing → captured`, with `declined`, `failed`, `voided`, `refunding`, `refunded` branches. Each transition is a row in `payment_transitions` written in the same transaction as the state update, and published to Kafka topic `payments.events` via the outbox pattern. Illegal transitions are rejected and alert.

### 4.2 Idempotency
Every mutating request must carry an `Idempotency-Key` header. Tollgate stores (merchant_id, key) → request hash and response for 24 hours. A repeat with the same hash returns the stored response; a different hash returns 409. Phase 1 keeps the existing `idempotency_keys` table in the payments PostgreSQL cluster (about 400M rows, partitioned by month is planned). Phase 3 evaluates moving it to Redis (separate design doc).

### 4.3 Processor adapters and routing
Each adapter implements `Authorize`, `Capture`, `Void`, `Refund` and maps processor errors to a common set of decline codes. Routing rules live in the Semaphore flag `payments.processor_routing` (weights per processor, with per-card-brand overrides – Amex only on Meridian). Circuit breakers open when a processor's error rate exceeds 20% over 30 seconds and route to the other processor, if the merchant's contract allows it.

### 4.4 Timeouts and retries
Processor calls time out at 8 s (Meridian's documented maximum is 6 s). Tollgate never retries an authorisation automatically after a timeout; it queries the processor's status endpoint to avoid double authorisation. Clients must retry with the same Idempotency-Key.

### 4.5 Risk checks
risk-svc pre-scores payments asynchronously from the checkout session. The synchronous risk call is only made when the pre-score is above 0.7 or missing, which we estimate at 6% of traffic, removing ~90 ms from the median path.

## 5. Migration
- **Phase 1 (Apr – Jun 2025):** authorise path in v3. Shadow traffic first (v3 computes but does not call processors), then live traffic by merchant cohort behind `payments.tollgate_v3_percent`: internal test merchants, 1%, 5%, 25%, 100%.
- **Phase 2 (Jul – Sep 2025):** capture, void, refund in v3; v2 read-only.
- **Phase 3 (Q4 2025):** idempotency store on Redis, v2 deleted.
Both versions share the payments database during migration; v3 writes transitions for payments it creates, v2 continues for payments it created.

### 5.1 Data model changes
- `payments` gains `state_version` (integer, incremented on every transition) to support optimistic locking; v2 ignores it.
- New table `payment_transitions (payment_id, from_state, to_state, reason, actor, created_at)`, partitioned by month, kept 7 years for audit.
- New table `outbox_events` drained by a relay process into `payments.events`; rows deleted after 7 days.
- `processor_attempts` records every call to a processor with latency and raw response code, so that disputes and processor reconciliation no longer need log searches.
All migrations follow expand/contract and run outside the month-end freeze. Dmitri Sokolov reviews each one.

### 5.2 Testing strategy
- **State machine property tests:** random sequences of events must never reach an illegal state or lose money (sum of captures ≤ authorised amount).
- **Processor simulators:** the fake processors in `dev-stack` gain fault modes (slow, 5xx, timeout after authorising, duplicate webhook) so that timeouts and "unknown outcome" paths are tested in CI.
- **Shadow comparison:** during shadow mode v3 computes routing, risk decision and idempotency outcome for every request and logs differences from v2. Go-live criteria: fewer than 1 difference in 100,000 requests, all explained.
- **Load tests:** 1,200 authorisations per second for 30 minutes in staging with processor simulators at 300 ms median latency.

### 5.3 Go/no-go criteria for each ramp step
Authorisation success rate within 0.2 percentage points of v2 for the same cohort; p99 latency not worse than v2; zero duplicate authorisations in reconciliation; no open P1/P2 incidents involving Tollgate; on-call trained on the new runbooks. Ramps happen Tuesday to Thursday before 14:00 UK time, never during month-end or the December freeze.

## 6. Observability and SLOs
- Authorisation availability 99.95% (non-5xx, excluding processor declines).
- p99 authorisation latency under 800 ms end-to-end; Tollgate-internal p99 under 150 ms.
- Lantern dashboards: Tollgate / Overview, Tollgate / Latency breakdown, Tollgate / Processors. Runbooks: Tollgate high latency, Switching card processors.

## 7. Security and compliance
PCI DSS scope is unchanged. Two approvals on every PR. Pen test of the v3 API in June 2025. Processor credentials in Strongbox, loaded at start-up.

## 8. Risks
- Two code paths during migration – mitigated by cohort rollout and the shared state machine tests.
- Idempotency table growth – 400M rows, vacuum pressure. We accept this for phase 1 and will monitor (Dmitri Sokolov to review indexes before the 100% ramp).
- Team capacity: 5 engineers; Payouts work pauses in Q2.

## 9. Alternatives
- Incremental refactor of v2: rejected; the thread model is the main latency source.
- Buying an orchestration layer from a payments vendor: adds a third party in the money path and per-transaction fees.
""")

IDEM_V1 = add(
    "dd-kestrel-idempotency-redis", "Kestrel phase 3: idempotency store on Redis (rev 1)", "Grace Nakamura",
    "Engineering/Design Docs/Payments", "design_doc", "2025-09-08", r"""
# Kestrel phase 3 – idempotency store on Redis

Status: Approved (rev 1) · Author: Grace Nakamura · Reviewers: Dmitri Sokolov, Adaeze Okafor · Epic: PAY-880

## Problem
The `idempotency_keys` table on the payments PostgreSQL cluster has 430M rows and grows by ~1.4M per day. On 6 August 2025 an invalid index on this table caused sequential scans, pool exhaustion and a 38-minute P1 latency incident (INC-2025-077). Even with the index fixed, every authorisation does one read and one write on this table, and autovacuum on it takes 9 hours.

## Proposal
Move idempotency records to a dedicated Redis cluster `tollgate-idem` (3 shards, 1 replica each, AOF every second), using one key per request: `idem:{merchant_id}:{idempotency_key}` → hash of (request_hash, status, response_body). Use `SET NX` to claim a key with status `in_progress`, then overwrite with the final response.

- **TTL:** 1 hour. Analysis of the last 30 days shows 99.7% of client retries arrive within 10 minutes of the original request, so 1 hour is generous and keeps memory under 20 GB.
- **Consistency:** if Redis is unavailable, Tollgate fails closed (returns 503) rather than processing without idempotency.
- **Migration:** dual-write to PostgreSQL and Redis for one week, read from Redis behind the flag `payments.idem_redis_read`, then stop writing to PostgreSQL and truncate the table.

## Expected result
Removes ~2,600 queries per second from the payments database at peak, and brings idempotency p99 from 14 ms to under 2 ms.

## Risks
Memory growth if TTL is raised; Redis failover loses up to 1 second of writes (accepted: a lost record means a retry would be processed again only within that second).
""")

add("dd-kestrel-idempotency-redis-rev2", "Kestrel phase 3: idempotency store on Redis (rev 2)", "Grace Nakamura",
    "Engineering/Design Docs/Payments", "design_doc", "2025-12-15", rep(
        IDEM_V1,
        ("Status: Approved (rev 1)", "Status: Approved (rev 2, after INC-2025-118)"),
        ("# Kestrel phase 3 – idempotency store on Redis",
         "# Kestrel phase 3 – idempotency store on Redis\n\n> **Rev 2 changes (15 December 2025):** TTL raised from 1 hour to 72 hours; TTL is now a contract with clients, not an internal tuning knob. See INC-2025-118 (duplicate charges, 2 December 2025)."),
        ("- **TTL:** 1 hour. Analysis of the last 30 days shows 99.7% of client retries arrive within 10 minutes of the original request, so 1 hour is generous and keeps memory under 20 GB.",
         "- **TTL:** 72 hours. Rev 1 used 1 hour because 99.7% of retries by API clients arrive within 10 minutes. That analysis missed Ledger's recurring-payment retry job, which retries failed or unknown-outcome charges after 2, 6 and 24 hours with the same Idempotency-Key. Our public API docs promise 24 hours; 72 hours adds margin. Memory estimate: 190 GB, so the cluster grows to 6 shards.\n- **Contract test:** a CI test in Tollgate asserts TTL ≥ the documented 24 hours, and Ledger's retry schedule is checked against it."),
        ("Removes ~2,600 queries per second", "Still removes ~2,600 queries per second"),
        ("Memory growth if TTL is raised;", "Memory growth (monitored with an alert at 70% of maxmemory; eviction policy is `noeviction` so that we never silently drop keys);"),
    ))

add("dd-osprey-quarry-migration", "Project Osprey: moving reporting to Quarry", "Maribel Ocampo",
    "Data/Design Docs", "design_doc", "2023-11-06", r"""
# Project Osprey – moving reporting from reportdb to Quarry

Status: Approved · Author: Maribel Ocampo (Data Platform) · Stakeholders: Rafael Mendes (Finance), Kwame Mensah (Analytics), Dmitri Sokolov (DBA)

## Background
Most internal reporting runs on `reportdb`, an asynchronous PostgreSQL replica of the Ledger primary with ~140 materialised views refreshed hourly. It has three problems: refreshes take up to 50 minutes and lag grows at month-end; heavy queries from Finance cause replication lag; and data from other systems (Tollgate, Gatehouse, CRM, support desk) cannot be joined because it is not in Ledger.

Quarry is our cloud data warehouse account, set up in 2023 for product analytics. Project Osprey makes Quarry the single place for reporting and switches off reportdb.

## Target architecture
- **Ingestion (Sluice):** change data capture from the Ledger and payments databases via Debezium into Kafka topics (`cdc.ledger.*`, `cdc.payments.*`), plus domain events (`ledger.events`, `payments.events`). Sluice loaders write to Quarry raw zones every 15 minutes; SaaS sources (CRM, support desk) load nightly.
- **Modelling:** dbt project `quarry-models` with staging, intermediate and mart layers. Finance marts (`fin_revenue_daily`, `fin_ar_aging`, `fin_payouts`) have tests for row counts, uniqueness and reconciliation with Ledger totals.
- **Access:** roles `analyst`, `finance_reader`, `pii_reader`, `admin`. Restricted columns are tokenised in Sluice before load.
- **BI:** existing dashboards are rebuilt on Quarry marts.

## Freshness targets
Raw zones: 30 minutes. Finance marts: 2 hours, and complete for the previous day by 06:00 UK time. Alerts go to the Data rotation in Beacon when a pipeline is more than 6 hours late (P3).

## Plan
1. Q4 2023: Sluice CDC for Ledger; `ledger_events` pipeline.
2. Q1–Q2 2024: finance marts built and reconciled in parallel with reportdb for two month-ends.
3. Q3 2024 – Q1 2025: rebuild the 60 most-used dashboards; retire unused views (usage logs show 71 of 140 views not queried in 90 days).
4. Cutover: Finance signs off after two clean month-end closes on Quarry. reportdb becomes read-only, then is switched off.

## Cost estimate
Quarry compute for Osprey workloads is estimated at 6,000–7,000 credits per month once all finance marts run there (roughly £12–14k per month), partly offset by switching off the reportdb replica (about £2,400 per month) and by the time Finance saves at month-end. Warehouses are sized S for development, M for dbt runs and dashboards, and one L warehouse for the nightly load; all auto-suspend after 60 seconds.

## Testing and reconciliation
For each finance mart we will run the old reportdb view and the new Quarry model side by side for at least two month-ends. A reconciliation job compares daily totals per currency and per entity and posts differences above £1 to #osprey. Every difference must be explained and either fixed or accepted by Finance in writing. Definitions that change on purpose (for example how partially paid invoices are aged) are documented in the Finance handbook before cutover.

## Ownership after cutover
Data Platform owns Sluice, the raw zones and the freshness SLOs. Analytics owns the marts and dashboards. Finance owns the definitions of finance metrics. Producer teams own their event schemas and must not break consumers without a migration plan.

## Risks
Schema changes in source events breaking loads (we will add schema contracts), cost growth in Quarry, and Finance trust in new numbers (mitigated by parallel running).
""")

add("dd-osprey-schema-contracts", "Schema contracts for event pipelines", "Maribel Ocampo",
    "Data/Design Docs", "design_doc", "2024-03-04", r"""
# Schema contracts for event pipelines

Status: Approved · Author: Maribel Ocampo · Follow-up from INC-2024-008 (Quarry loads failed for 3 days after a field rename in `ledger.events`)

## Problem
Producers change event schemas without knowing that Sluice and dbt depend on them. On 9 February 2024 the Ledger team renamed `currency` to `currency_code` in `InvoicePaid` events. Sluice rejected every record, finance marts went stale over the weekend, and nobody noticed until Monday.

## Proposal
1. **Registered schemas.** Every topic consumed by Sluice (`ledger.events`, `payments.events`, `auth.events`) gets an Avro schema in the schema registry with compatibility mode `BACKWARD_TRANSITIVE`. Producers fail at start-up if their schema is not compatible.
2. **Contract files.** Each producer repo contains `contracts/*.avsc` and a CI check that runs the registry compatibility test on every PR. Renames must be done as add-new-field, dual-write, migrate consumers, then deprecate.
3. **Ownership.** Each event type lists an owner team and consumers in `contracts/OWNERS`. Breaking changes need a review from Data Platform.
4. **Quarantine instead of reject.** Sluice writes records that fail validation to a quarantine table and alerts, instead of failing the whole batch. Loads continue for valid records.
5. **Freshness alerting on weekends.** The Data rotation in Beacon now pages for finance marts more than 6 hours late, seven days a week.

## Rollout
Registry and CI check for `ledger.events` in March 2024, `payments.events` in April (coordinated with Payments), `auth.events` when Gatehouse v2 ships.
""")

add("dd-curlew-multiregion", "Project Curlew: second region (dub1)", "Tomasz Wierzbicki",
    "Engineering/Design Docs/Platform", "design_doc", "2025-04-22", r"""
# Project Curlew – second production region

Status: **Approved** (architecture review 15 April 2025) · Author: Tomasz Wierzbicki (SRE) · Sponsors: Hannah Voss (CTO), Priya Raman (VP Engineering) · Epic: INFRA-2200

## 1. Summary
All Fernwick production systems run in one cloud region (lon1, three availability zones). Project Curlew builds a second region, dub1, as a warm standby that also serves a slice of read traffic, so that we can survive the loss of lon1 with RTO of 1 hour and RPO of 5 minutes for Ledger and Tollgate, as promised in the Information Security Policy and in the contracts of our largest customers.

## 2. Motivation
- Contracts: 14 enterprise customers have a 99.95% availability commitment and a DR clause. Our 2024 SOC 2 report noted that DR was "designed but not tested".
- Risk register: RISK-31 "loss of primary region" is scored 16 (likelihood 2, impact 8 on the extended scale), the highest open risk.
- Incidents: the DNS misconfiguration in November 2024 (INC-2024-112) showed that our edge configuration has single points of failure.

## 3. Scope
In scope: Ledger API and workers, Tollgate, Gatehouse, the API gateway, checkout, notification service, Kafka `events-prod`, payments and Ledger PostgreSQL, Redis clusters (sessions, idempotency), Strongbox replicas.
Out of scope: Quarry (cloud service with its own DR), Shipyard control plane (can be rebuilt from Git in 4 hours), internal tools, the mobile BFF for the first phase.

## 4. Architecture
- **Mode:** warm standby. dub1 runs every in-scope service at 25% of lon1 capacity and scales up on failover (`shipyard scale --region dub1 --profile full`, tested to reach full capacity in 12 minutes).
- **Databases:** PostgreSQL asynchronous streaming replicas in dub1 (Patroni standby cluster). Measured replication lag lon1→dub1: median 180 ms, p99 1.9 s. Promotion is manual (decision by the incident commander) to avoid split brain.
- **Kafka:** MirrorMaker 2 replicates `ledger.events`, `payments.events` and `auth.events`. Consumers in dub1 store offsets translated by MM2.
- **Redis:** active-passive replication for `gatehouse-sessions` and `tollgate-idem`. On failover users may need to log in again if the last second of sessions is lost.
- **Secrets:** Strongbox performance replica in dub1; signing keys replicated.
- **Traffic:** the global load balancer steers traffic with weights per region. DNS records point at the global anycast address and are not changed during failover. In normal operation, dub1 receives 10% of read-only API traffic (GET requests on Ledger and Gatehouse JWKS) so that it is exercised continuously.

## 5. Failover procedure
Documented in the runbook "Regional failover: lon1 to dub1". Summary: freeze deploys, promote databases, shift load balancer weights, scale dub1, update status page. Target: 45 minutes from decision to customer traffic served from dub1.

## 6. Testing
- Game day every six months (first in March 2026) with a real failover of production traffic during a low-traffic window.
- Monthly automated checks: replication lag, scale-up dry run, secrets present in both regions.

## 6a. Service readiness checklist
Every in-scope service must meet these before dub1 is declared live:
1. Deployed by Shipyard to both regions from the same release; region-specific config limited to endpoints and capacity.
2. No hard-coded lon1 hostnames (a CI check searches for `lon1` in config bundles).
3. Reads its secrets from the local Strongbox replica.
4. Health checks used by the global load balancer test real dependencies (database, Redis), not just the process.
5. A Lantern dashboard with a region selector and alerts that fire per region.
6. Runbook updated with region-specific steps, reviewed by SRE.
7. Stateful components documented: what is lost on failover, and how it is reconciled (for example, in-flight payments are reconciled by Tollgate's processor status checks).

## 6b. Communication during a failover
The incident commander posts in #incidents, the communications lead updates the status page within 15 minutes ("We are moving traffic to our secondary region; some requests may fail for a few minutes"), and account managers contact the 14 enterprise customers with DR clauses. After failover, Finance is told which time window may need payment reconciliation. A failover is always followed by a postmortem, even when it is a planned test.

## 6c. Dependencies on other projects
- **Kestrel phase 3:** the Redis idempotency store must replicate to dub1 before go-live, otherwise a failover could reprocess retried payments.
- **Heron:** signing keys and the key rotator must work in both regions; the rotator's fleet check must include dub1 verifiers.
- **Plover:** every dub1 resource is tagged from day one; dub1 costs are reported separately in the monthly FinOps review.
- **Shipyard:** multi-region releases and a `--region` flag (Platform team, Q2 2025).

## 7. Costs
Estimated +£38k per month (+31% of production cloud spend): compute £17k, databases £12k, cross-region transfer £6k, other £3k. Project Plover will offset part of this through rightsizing in lon1.

## 8. Timeline
- May–July 2025: network, Kubernetes cluster `k8s-prod-dub1`, Strongbox replica, CI/CD support in Shipyard (`--region`).
- August–September 2025: database and Kafka replication; Redis.
- October 2025: services deployed to dub1; read traffic at 1%, then 10%.
- November 2025: announce dub1 live for DR. (Note: Kestrel phase 3 Redis must be replicated before go-live.)
- March 2026: first full failover game day.

## 9. Risks and open questions
- Data residency: dub1 is in the EU, lon1 in the UK. Legal (Ines Varga) confirmed the UK adequacy decision covers this; customer DPAs list both regions from the 2025 update.
- Capacity on failover: if dub1 cannot scale, we serve read-only mode for Ledger.
- Teams must make every new service region-aware; Shipyard will refuse deploys to only one region for in-scope services after November 2025.
""")

add("dd-dns-terraform", "DNS management: guardrails after INC-2024-112", "Oluwaseun Adeyemi",
    "Engineering/Design Docs/Platform", "design_doc", "2025-01-20", r"""
# DNS management guardrails

Status: Implemented (January 2025) · Author: Oluwaseun Adeyemi · Related: INC-2024-112, INFRA-2231, INFRA-2234

## Context
DNS zones live in Terraform in `infra-live/dns`. On 12 November 2024 a PR changed the target of `api.fernwick.example` to a hard-coded hostname of a load balancer that had been deleted the week before. `terraform plan` showed a one-line change that looked right, two reviewers approved, and roughly 60% of API traffic failed for 47 minutes as resolvers picked up the new record. The one-hour TTL slowed recovery.

## Changes
1. **No literal hostnames for internal targets.** DNS records must reference load balancer resources or data sources (`data.aws_lb.api_lon1.dns_name`), so plans fail if the target does not exist. A lint rule (`dns-lint`) rejects string literals ending in our load balancer domains.
2. **Inventory check.** `dns-lint` also resolves every CNAME/alias target in the plan and fails if it returns NXDOMAIN.
3. **TTL standards.** 300 seconds for API and app records, 3600 for static records, 60 seconds during changes.
4. **Staged apply.** Changes to records in the `critical` list (api, app, auth, checkout, MX, SPF) apply to the canary hostname `api-canary.fernwick.example` first; the synthetic checks must pass for 10 minutes before the real record is applied.
5. **Ownership.** SRE owns the `dns/` directory (CODEOWNERS); one SRE approval is required.

## Not doing
Moving to a separate DNS management product. Terraform remains the source of truth. Curlew will use global load balancing rather than DNS-based failover, which reduces how often we touch these records.
""")

add("dd-shipyard-canary-v2", "Shipyard progressive delivery v2: config in the canary", "Callum Reid",
    "Engineering/Design Docs/Platform", "design_doc", "2024-07-29", r"""
# Shipyard progressive delivery v2

Status: Approved · Author: Callum Reid (Platform) · Related: INC-2024-044

## Problem
Shipyard rolls out container images through canary stages, but service configuration (the `config/` bundle with feature settings, templates and connection limits) was applied to every pod at once through a ConfigMap. In INC-2024-044 a config change to the invoice PDF renderer went to 100% immediately and broke PDF generation for 52 minutes; rolling back the image did not help.

## Design
- **Releases = image + config.** A Shipyard release is now an immutable pair (image SHA, config bundle hash). Config-only changes create a new release and go through the same 1% → 10% → 50% → 100% stages.
- **Versioned ConfigMaps.** Each release gets its own ConfigMap `<service>-config-<hash>`; canary pods mount the new one, baseline pods the old one.
- **Rollback** restores both image and config from the previous release. `shipyard config history` and `shipyard config rollback` are added for visibility.
- **Canary analysis** compares error rate, p99 latency and, where configured, a business metric (for ledger-pdf: PDFs rendered per minute) between canary and baseline pods using a Mann-Whitney test over 10-minute windows.
- **Semaphore flags** remain the right tool for instant switches; config bundles are for settings that change rarely.

## Migration
All services get versioned config automatically on their next deploy after 19 August 2024. Services that mount secrets via config (7 found) must move them to Strongbox first.
""")

add("dd-magpie-search", "Project Magpie: intranet search", "Noor Haddad",
    "Engineering/Design Docs/Internal Tools", "design_doc", "2025-09-29", r"""
# Project Magpie – intranet search

Status: In review · Author: Noor Haddad (PM, Internal Tools) with Callum Reid · Epic: MAG-1

## Problem
Fernwick knowledge is spread across the wiki (about 9,000 pages), Tracker (180,000 tickets), Google Drive, and chat. The wiki's built-in search is keyword-only and ranks by page title. In the 2025 engineering survey, "finding documentation" was the second most common complaint (after flaky CI), and new joiners said they could not find runbooks during on-call shadowing. Examples of failed searches from the logs: "how do I get into quarry" (the page is titled "Requesting access to Quarry"), "heron rollback", "login outage april".

## Goals
- One search box across wiki, Tracker and Drive, respecting permissions.
- Good results for natural-language queries, acronyms and code names.
- Measurable quality: we will build a labelled set of 300 real queries with graded relevance (0–3) and track nDCG@10 before launch.

## Design
- **Connectors** index wiki spaces, Tracker projects and shared drives every 15 minutes. Documents keep their ACL groups; results are filtered by the searcher's SSO groups at query time.
- **Hybrid retrieval:** BM25 over title and body plus dense embeddings of 512-token chunks, combined with reciprocal rank fusion. A small reranker re-scores the top 50.
- **Freshness and type signals:** boost runbooks for queries containing "how to" and incident ids; demote pages not edited for 3 years and pages marked "(copy)" or "DRAFT" when a final version exists.
- **Synonyms:** a maintained glossary maps code names to systems (Heron → Gatehouse v2, Kestrel → Tollgate v3, Osprey → Quarry migration, Curlew → dub1).

## Evaluation
Offline: labelled query set, nDCG@10 and recall@50. Online: click-through on top 3 and "no result clicked" rate. Launch bar: nDCG@10 at least 0.15 above the current wiki search.

## Open questions
Whether chat messages should be indexed (privacy review with Ines Varga), and how to handle near-duplicate pages copied into several spaces.
""")

add("dd-plover-cost-tagging", "Project Plover: cloud cost allocation and tagging standard", "Rafael Mendes",
    "Engineering/Design Docs/Platform", "design_doc", "2025-06-02", r"""
# Project Plover – cost allocation and tagging

Status: Approved · Authors: Rafael Mendes (Finance) and Callum Reid (Platform) · Epic: FINOPS-12

## Why
Cloud spend was £122k per month in April 2025 and is forecast to reach £170k by the end of 2025 with Project Curlew. Only 54% of spend can be attributed to a team today. Finance cannot produce unit economics (cost per invoice sent, cost per payment) that the board has asked for. Plover's target is a 15% reduction in cost per payment by Q2 2026 and 95% attribution.

## Tagging standard
Every cloud resource and Kubernetes namespace must carry:
- `owner-team` (from the service catalogue, e.g. `payments`, `identity`, `data-platform`)
- `service` (e.g. `tollgate`, `gatehouse`, `sluice`)
- `env` (`prod`, `staging`, `dev`)
- `cost-centre` (Finance code, e.g. `CC-410` Payments Engineering)
Terraform modules add tags from `locals`; a policy check in the `infra-live` pipeline blocks untagged resources from 1 July 2025. Shared costs (Kubernetes nodes, Kafka) are split by usage: CPU and memory requests per namespace for clusters, bytes in per topic for Kafka.

## Quarry costs
Quarry warehouses are tagged per team; each team gets a monthly credit budget with alerts at 80% and 100%. Warehouses auto-suspend after 60 seconds idle. Large warehouses (L and above) need a reason in the warehouse request.

## Reporting
A daily `finops_cost_daily` mart in Quarry, a Lantern dashboard per team, and a monthly FinOps review with engineering managers.

## Savings backlog (initial)
Rightsize over-provisioned node pools (est. £9k/month), commit to 1-year savings plans for baseline compute (£11k/month), move Kafka cold data to tiered storage (£3k/month), delete unattached volumes and old snapshots (£2k/month).
""")

add("dd-wren-offline-sync", "Project Wren: offline invoice drafts on mobile", "Beatriz Cordeiro",
    "Engineering/Design Docs/Mobile", "design_doc", "2025-02-03", r"""
# Project Wren – offline invoice drafts

Status: Approved · Author: Beatriz Cordeiro (Mobile lead) · Product spec: "Wren: Offline mode for invoices"

## Context
Project Wren is the redesign of the Fernwick mobile app (iOS and Android, React Native). Tradespeople create invoices on site, often with poor signal. Today the app needs a connection to save a draft, and 11% of mobile invoice creations are abandoned after a network error (analytics, June–August 2024).

## Design
- **Local store:** drafts are stored in SQLite on the device, encrypted with a key in the iOS Keychain / Android Keystore. Only drafts are offline; sending an invoice always requires a connection.
- **Sync protocol:** each draft has a client-generated UUID and a version counter. The app pushes changes to the mobile BFF (`POST /mobile/v2/drafts/sync`) with the last known server version. The server applies changes if versions match; otherwise it returns the server copy and the app shows a conflict screen ("Keep this device's version / Keep the web version").
- **Line items and customers** created offline get temporary IDs, replaced with server IDs on sync.
- **Retry:** exponential backoff starting at 5 seconds, capped at 10 minutes, only on network errors; 4xx responses stop retries and show an error. (The January 2025 analytics retry bug that flooded `analytics.clickstream` – INC-2025-006 – was in the analytics SDK, not in draft sync, but the same backoff library is now used for both.)
- **Limits:** 200 offline drafts per device; photos attached to drafts up to 50 MB total.

## Security
Drafts can contain customer names and amounts (Confidential). Local data is wiped on logout and after 30 days without login. Jailbroken/rooted devices cannot enable offline mode.
""")

add("dd-starling-provisioning", "Starling: tenant provisioning service", "Grace Nakamura",
    "Engineering/Design Docs/Growth", "design_doc", "2025-10-20", r"""
# Starling – tenant provisioning service

Status: Draft for review · Author: Grace Nakamura · Product spec: "Starling: Self-serve signup (Final)"

Project Starling lets small businesses sign up, verify their identity and start sending invoices without talking to Sales. Today a new tenant is created by a support agent running the `tenant-create` script, which takes 1–2 working days including manual KYC checks.

## Components
- **provisioner** (new Go service) owns the signup state machine: `started → email_verified → business_details → kyc_pending → kyc_passed → active` (or `kyc_failed`, `abandoned`).
- **KYC:** calls our identity verification vendor asynchronously; results arrive by webhook. Only Fernwick Pay acceptance needs KYC; invoicing-only tenants become active after email verification.
- **Tenant creation:** provisioner calls Ledger's internal API to create the tenant, Gatehouse to create the owner user, and Tollgate to create a merchant record once KYC passes.
- **Idempotency:** every downstream call uses an idempotency key derived from the signup id and step, so retries are safe (lesson from INC-2025-118).

## Data
Signup records in a new `provisioning` PostgreSQL database; PII fields encrypted at the column level. Abandoned signups are deleted after 30 days.

## Metrics
Funnel events on `growth.events` into Quarry. Target from the product spec: 60% of started signups reach `active` within 24 hours.

## Open questions
Fraud screening before email verification; whether to rate-limit signups per IP (proposed: 5 per hour).
""")

add("dd-beacon-redundancy", "Paging redundancy for Beacon", "Oluwaseun Adeyemi",
    "SRE/Design Docs", "design_doc", "2025-04-07", r"""
# Paging redundancy for Beacon

Status: Approved · Author: Oluwaseun Adeyemi · Related: INC-2025-029

Beacon is our on-call and paging tool. It receives alerts from Lantern, applies schedules and escalation policies, and notifies people through a single mobile push provider. On 8 March 2025 the API token Beacon used for that provider expired; for 41 minutes no pages were delivered, and a P2 Ledger incident went unnoticed until a customer emailed support.

## Changes
1. **Second notification channel.** Add SMS and voice calls through a second provider. If a push is not acknowledged as delivered within 60 seconds, Beacon sends SMS, and after 3 minutes calls the on-call's phone.
2. **Heartbeat page.** Every 30 minutes Beacon sends a silent test notification to a device in the SRE office and to a cloud phone number; if either is not received, Lantern alerts through email and chat (independent path).
3. **Credential monitoring.** All third-party tokens used by Beacon move to Strongbox with expiry metadata; `CertExpiringSoon`-style alerts at 30 and 7 days.
4. **Dead man's switch from Lantern:** an always-firing alert that must reach Beacon; if Beacon does not receive it for 5 minutes, Lantern emails sre-leads@.

## Rollout
Items 3 and 4 in April 2025. Items 1 and 2 depend on procurement of the second provider (VEND-233) and are planned for Q3 2025.
""")

add("dd-kafka-tiered-storage", "Kafka tiered storage and producer quotas", "Oluwaseun Adeyemi",
    "Engineering/Design Docs/Platform", "design_doc", "2025-02-10", r"""
# Kafka tiered storage and producer quotas

Status: Approved · Author: Oluwaseun Adeyemi · Related: INC-2025-006, FINOPS-12

## Context
`events-prod` has 6 brokers per region with 2 TB local disks. On 14 January 2025 a retry loop in the mobile analytics SDK (Wren beta) multiplied `analytics.clickstream` traffic by about 10x; broker 4 filled its disk and partitions of `ledger.events` hosted there went offline, delaying Sluice loads into Quarry by 3 hours.

## Proposal
1. **Tiered storage** for topics with retention over 24 hours: keep 24 hours on local disk, older segments in object storage. Applies to `ledger.events` (retention 14 days), `payments.events` (14 days), `analytics.clickstream` (7 days). Local disk usage expected to drop by 65%.
2. **Producer quotas per client id:** `mobile-analytics` 20 MB/s, `ledger-api` 30 MB/s, default 10 MB/s. Quota violations throttle the producer instead of filling disks.
3. **Separate critical topics:** `ledger.events` and `payments.events` move to a dedicated set of brokers (rack-aware placement) so that analytics load cannot take them offline.
4. **Alerting:** disk alerts at 70% (ticket), 80% (warning) and 90% (page).

Cost: object storage about £400/month; savings from smaller disks about £3k/month (counted towards Project Plover).
""")

# ---------------------------------------------------------------------------
# Postmortems
# ---------------------------------------------------------------------------

add("pm-2023-09-vpn-cert", "Postmortem: VPN gateway certificate expiry (INC-2023-019)", "Deepa Venkatesan",
    "SRE/Postmortems", "postmortem", "2023-09-11", r"""
# Postmortem: VPN gateway certificate expiry

Incident: INC-2023-019 · Severity: P2 · Date: 4 September 2023 · Duration: 3 h 05 min · IC: Tomasz Wierzbicki

## Summary
The TLS certificate on the Fernwick Connect VPN gateways, issued by our internal CA, expired at 06:00 UTC on Monday 4 September. From that point nobody working remotely could connect to the VPN, so internal tools (Shipyard, Lantern, Quarry, the IT portal) were unreachable outside the offices. Customer-facing systems were not affected. About 240 people were blocked for part of the morning; two deploys were delayed.

## Timeline (UTC)
- 06:00 Certificate expires.
- 06:40 First reports in #it-help from Lisbon ("VPN says handshake failed").
- 07:15 IT helpdesk treats it as a client problem and asks people to reinstall.
- 07:50 Aoife Brennan notices all failures share the same error and escalates to SRE. Incident declared P2.
- 08:20 Cause identified: expired gateway certificate.
- 08:35 New certificate issued from the internal CA; the CA admin had to be found because only two people could issue certificates.
- 09:05 Certificate deployed to both gateways; connections recover.

## Root cause
The gateway certificate had a one-year lifetime and was installed by hand in 2022. It was not in the certificate inventory, so no expiry alert existed. The person who installed it had left the company.

## What went well
Office-based staff were unaffected, and on-call engineers could still reach production through the break-glass bastion.

## What went wrong
Slow diagnosis: the helpdesk had no way to see gateway certificate errors. Only two people could issue internal certificates.

## Action items
- IT-3310: Add all VPN and internal CA certificates to the inventory with expiry alerts (Owner: Oluwaseun Adeyemi) – done.
- IT-3311: Extend gateway certificates to automated renewal via the internal ACME endpoint (Owner: Deepa Venkatesan).
- IT-3312: Give the helpdesk a VPN gateway health dashboard in Lantern (Owner: Aoife Brennan).
- IT-3313: Train two more people to issue internal CA certificates (Owner: Samir Qureshi).
""")

add("pm-2023-12-ledger-failover", "Postmortem: Ledger database failover and PgBouncer stale pool (INC-2023-031)", "Dmitri Sokolov",
    "SRE/Postmortems", "postmortem", "2024-10-21", r"""
# Postmortem: Ledger database failover – 11 minutes of failed writes

Incident: INC-2023-031 · Severity: P1 · Date: 5 December 2023 · Duration: 11 min (writes), 26 min (session logouts) · IC: Tomasz Wierzbicki

## Summary
At 14:02 UTC the Ledger primary PostgreSQL node `ledger-pg-1` lost its network interface after a hypervisor fault. Patroni promoted the synchronous replica `ledger-pg-2` within 34 seconds, as designed. However, PgBouncer continued routing writes to the old leader address for 11 minutes, so invoice creation, payment recording and logins failed. Because sessions were stored in the Ledger database (Gatehouse v1), every logged-in user was also logged out.

## Impact
- 11 minutes during which 94% of write requests to Ledger API failed (about 38,000 failed requests).
- All web and mobile sessions invalidated; login traffic peaked at 7x normal in the following 15 minutes.
- 1,950 recurring payments scheduled in that window were retried successfully by the retry job at 16:00.

## Root cause
PgBouncer's health check interval for the Ledger pool was 300 seconds and it did not subscribe to Patroni leader changes. The connections it held to the old leader hung until TCP timeouts rather than failing fast.

## Contributing factors
- Gatehouse v1 sessions in the Ledger database turned a write outage into a mass logout.
- The failover runbook stopped at "check Patroni" and did not mention PgBouncer.

## Action items
- DBA-415: PgBouncer health check to 5 seconds and Patroni callback to reload PgBouncer on leader change (Owner: Dmitri Sokolov) – done 2023-12-08.
- DBA-416: Update the failover runbook with PgBouncer and CDC slot checks (Owner: Dmitri Sokolov) – done.
- GATE-901: Move sessions out of the Ledger database (Owner: Jonas Lindqvist) – became part of Project Heron.
- DBA-418: Quarterly failover drill on staging (Owner: Dmitri Sokolov).
""")

add("pm-2024-02-quarry-freshness", "Postmortem: Quarry finance marts stale for 61 hours (INC-2024-008)", "Maribel Ocampo",
    "SRE/Postmortems", "postmortem", "2024-03-05", r"""
# Postmortem: Quarry finance marts stale for 61 hours

Incident: INC-2024-008 · Severity: P3 (raised to P2 on Monday) · Dates: 9–12 February 2024 · IC: Maribel Ocampo

## Summary
A Ledger release on Friday 9 February renamed the `currency` field to `currency_code` in `InvoicePaid` and `InvoiceIssued` events on the `ledger.events` topic. The Sluice `ledger_events` loader validated records against the old schema and rejected every batch. No alert fired over the weekend because freshness alerts only paged during working hours. Finance discovered stale revenue dashboards on Monday morning while preparing the February board pack.

## Timeline (UTC)
- Fri 17:40 Ledger release 2024.02.09-2 deployed via Shipyard.
- Fri 17:55 First Sluice batch rejected. Error logged, ticket auto-created in DATA project (DATA-1502) but not paged.
- Sat–Sun Every 15-minute batch rejected (~190 batches).
- Mon 07:30 Rafael Mendes reports revenue dashboards show nothing after Friday.
- Mon 08:10 Incident declared; cause found at 08:45.
- Mon 10:20 Loader updated to accept both field names.
- Mon 10:30–15:10 Backfill of 10–12 February in three chunks (see "Backfilling a Quarry table").
- Mon 15:10 Finance marts fresh; Finance confirms numbers reconcile.

## Root cause
An event schema change without any compatibility check between producer and consumer. The Ledger team did not know Sluice consumed these fields.

## Contributing factors
- Whole-batch rejection instead of quarantining bad records.
- Freshness alerts were business-hours only.
- Project Osprey had no contract between producer teams and Data Platform.

## Action items
- DATA-1510: Schema registry with backward compatibility for `ledger.events` (Owner: Maribel Ocampo) – see design doc "Schema contracts for event pipelines".
- DATA-1511: Quarantine invalid records instead of failing batches (Owner: Kwame Mensah).
- DATA-1512: Page the Data rotation seven days a week for finance marts more than 6 hours late (Owner: Maribel Ocampo).
- LEDG-2290: Add Data Platform to CODEOWNERS for event definitions (Owner: Ledger EM).
""")

add("pm-2024-06-shipyard-config", "Postmortem: invoice PDFs broken by config change (INC-2024-044)", "Callum Reid",
    "SRE/Postmortems", "postmortem", "2024-08-05", r"""
# Postmortem: invoice PDF generation broken for 52 minutes

Incident: INC-2024-044 · Severity: P1 · Date: 19 June 2024 · Duration: 52 min · IC: Oluwaseun Adeyemi

## Summary
A configuration change for the `ledger-pdf` service changed the font directory path. The config bundle was applied to all pods at once, bypassing the Shipyard canary, and every PDF render failed. Invoices could still be created but emails went out without attachments and "Download PDF" returned errors.

## Impact
- 52 minutes (10:14–11:06 UTC). About 14,300 invoice emails sent without a PDF; 2,100 failed downloads.
- 230 support tickets. Customer Success sent a follow-up email to affected senders on 20 June.

## Timeline (UTC)
- 10:12 PR #4471 merged (config-only change: template font path for new Ledger invoice designs).
- 10:14 Shipyard applies the config ConfigMap; pods reload; PDF error rate 100%.
- 10:19 Alert `LedgerPdfRenderErrors` pages Ledger on-call.
- 10:27 On-call rolls back the image (`shipyard rollback ledger-pdf --to previous`) – no improvement, because the image was not what changed.
- 10:48 Config change identified from the deploy log.
- 11:02 Config reverted by a new PR; 11:06 recovery.
- 11:30–13:00 Re-sent PDFs to recipients via a backfill job (LEDG-2401).

## Root cause
Shipyard treated config bundles as out-of-band; only images went through canary analysis. The font path was valid in staging (different base image) but not in production.

## Action items
- PLAT-610: Config + image as one release through canary stages (Owner: Callum Reid) – design doc "Shipyard progressive delivery v2".
- PLAT-611: `shipyard config history` and `config rollback` commands (Owner: Callum Reid).
- LEDG-2402: Business metric (PDFs rendered/min) in ledger-pdf canary checks (Owner: Ledger team).
- PLAT-612: Staging and production base images built from the same Dockerfile (Owner: Platform).
""")

add("pm-2024-08-status-tls", "Postmortem: status page certificate expired (INC-2024-071)", "Oluwaseun Adeyemi",
    "SRE/Postmortems", "postmortem", "2024-09-10", r"""
# Postmortem: status page certificate expired

Incident: INC-2024-071 · Severity: P3 · Date: 27 August 2024 · Duration: 4 h 20 min

## Summary
The TLS certificate for `status.fernwick.example`, which we upload manually to our status page provider, expired at 00:00 UTC. Visitors saw a browser security warning until 04:20. No product outage happened, but two customers tweeted screenshots asking whether Fernwick had been hacked.

## Root cause
The certificate was renewed by hand once a year and was not in `certs/inventory.yaml`, so no expiry alerts existed. This is the same failure mode as INC-2023-019 (VPN gateway): certificates outside cert-manager are invisible to monitoring.

## Action items
- SRE-520: Scan all public hostnames weekly for certificates expiring in under 30 days, regardless of inventory (Owner: Oluwaseun Adeyemi).
- SRE-521: Move the status page to a provider-managed certificate (Owner: Oluwaseun Adeyemi).
- SRE-522: Write the TLS certificate renewal runbook (done 9 September).
""")

add("pm-2024-11-dns", "Postmortem: API outage from DNS misconfiguration (INC-2024-112)", "Oluwaseun Adeyemi",
    "SRE/Postmortems", "postmortem", "2025-01-20", r"""
# Postmortem: API outage caused by DNS misconfiguration

Incident: INC-2024-112 · Severity: P1 · Date: 12 November 2024 · Duration: 47 min of customer impact (13:31–14:18 UTC), tail of ~40 min for some resolvers · IC: Tomasz Wierzbicki · Postmortem owner: Oluwaseun Adeyemi

## Summary
A Terraform change pointed the `api.fernwick.example` CNAME at `lb-api-lon1-old`, a load balancer that had been deleted on 5 November as part of a clean-up. Resolvers that refreshed the record received a hostname that no longer resolved, so API requests, the web app and the mobile app failed for those clients. Because the record had a TTL of 3600 seconds, the failure spread gradually and also took long to recover after the fix.

## Impact
- At the peak (14:05) about 60% of API requests failed to reach us; the web app was unusable for affected users.
- Fernwick Pay checkout pages use `checkout.fernwick.example` and were not affected; invoice payment links that call the API were.
- 610 support tickets; status page P1 update at 13:49.
- No data loss.

## Timeline (UTC)
- 13:24 PR #2187 in `infra-live` merged: "api: move CNAME to new LB" (INFRA-2225). The author copied the hostname from an old runbook; the new LB was `lb-api-lon1-v2`.
- 13:27 Pipeline applies the change. TTL 3600.
- 13:31 Synthetic checks from two of six locations fail. First customer reports at 13:38.
- 13:41 Alert `ApiAvailabilityLow` pages SRE. IC declares P1 at 13:44.
- 13:58 Cause found by comparing `dig` output from different resolvers.
- 14:03 Revert PR merged and applied; TTL lowered to 60 seconds in the same change.
- 14:18 Error rate back under 1% for most traffic; stragglers until ~14:55 from resolvers that had cached the bad record for the full hour.

## Root cause
The DNS record used a string literal for the target instead of a reference to the Terraform resource. The plan showed a plausible one-line diff and reviewers could not tell that the target did not exist.

## Contributing factors
- One-hour TTL on a critical record.
- No pre-apply check that targets resolve.
- Change during peak hours without a CHG ticket (DNS changes were incorrectly treated as standard changes).

## What went well
Synthetic checks detected the problem within 4 minutes of apply. Rollback was a simple revert.

## Action items
- INFRA-2231: `dns-lint` – reject literal hostnames and unresolvable targets (Owner: Oluwaseun Adeyemi) – done 2024-12-10.
- INFRA-2232: TTL 300 s for critical records (Owner: Oluwaseun Adeyemi) – done.
- INFRA-2233: Enforce the CHG ticket requirement for DNS changes in the pipeline – the Production Change Management Policy already classifies them as normal changes (Owner: Callum Reid) – done.
- INFRA-2234: Canary hostname staged apply for critical records (Owner: SRE) – done January 2025.
- INFRA-2235: Evaluate global load balancing to avoid DNS changes during failover (fed into Project Curlew).
""")

add("pm-2025-01-kafka-disk", "Postmortem: Kafka broker disk full, events delayed (INC-2025-006)", "Oluwaseun Adeyemi",
    "SRE/Postmortems", "postmortem", "2025-02-11", r"""
# Postmortem: Kafka broker disk full

Incident: INC-2025-006 · Severity: P2 · Date: 14 January 2025 · Duration: 3 h 10 min · IC: Callum Reid

## Summary
A beta build of the redesigned mobile app (Project Wren) shipped an analytics SDK version with a bug: on any HTTP 429 from the analytics collector it retried immediately and re-sent the whole local buffer. About 3,000 beta users produced roughly ten times normal traffic on `analytics.clickstream`. Broker 4 of `events-prod` in lon1 reached 100% disk at 09:52 UTC. Partitions led by broker 4, including 4 of 24 partitions of `ledger.events`, went offline.

## Impact
- Ledger API kept working (events are written through an outbox and retried), but the outbox backlog reached 1.2M events.
- Sluice loads into Quarry were 3 hours behind; finance marts were late but caught up before the 06:00 deadline the next day.
- Invoice notification emails, which consume `ledger.events`, were delayed by up to 2 h 40 min.

## Timeline (UTC)
- 08:30 Wren beta 0.9.3 reaches 3,000 users via staged rollout.
- 09:20 `KafkaBrokerDiskUsageHigh` (80%) fires as a warning; not paged.
- 09:52 Broker 4 at 100%; `UnderReplicatedPartitions` and `OfflinePartitions` page SRE.
- 10:15 Retention on `analytics.clickstream` lowered to 12 hours; disk drops to 71% after log cleanup.
- 10:40 Broker 4 restarted, partitions back online.
- 11:00 Mobile team halts the 0.9.3 rollout and disables analytics upload via Semaphore flag `mobile.analytics_upload`.
- 13:02 Outbox backlog drained; notification delays back to normal.

## Root cause
Missing producer quotas allowed one client to consume all broker disk. Critical and non-critical topics shared brokers.

## Action items
- INFRA-2260: Producer quotas per client id (Owner: Oluwaseun Adeyemi).
- INFRA-2261: Tiered storage and dedicated brokers for `ledger.events` / `payments.events` (Owner: Oluwaseun Adeyemi) – design doc "Kafka tiered storage and producer quotas".
- INFRA-2262: Page at 90% disk, not just 100% symptoms (Owner: SRE).
- MOB-388: Fix SDK retry to use exponential backoff and cap buffer resends (Owner: Beatriz Cordeiro) – done in 0.9.4.
""")

add("pm-2025-03-beacon-paging", "Postmortem: pages not delivered for 41 minutes (INC-2025-029)", "Oluwaseun Adeyemi",
    "SRE/Postmortems", "postmortem", "2026-02-16", r"""
# Postmortem: on-call pages not delivered

Incident: INC-2025-029 · Severity: P2 · Date: 8 March 2025 (Saturday) · Duration: 41 min without paging

## Summary
Beacon uses a mobile push provider to notify on-call engineers. The API token for that provider was created in March 2023 with a two-year expiry and expired at 02:10 UTC on 8 March. Beacon logged the 401 errors but had no other notification path. During the gap, a P2 incident in the Ledger recurring invoice scheduler (invoices queued but not sent) went unnoticed until a customer emailed support at 02:51 and the support on-call phoned the SRE lead.

## Impact
- 41 minutes with no pages delivered.
- Recurring invoices for 1,140 customers sent 58 minutes late. No financial impact.

## Root cause
Third-party credential with a fixed expiry, not tracked anywhere, in the single path for all paging.

## What went well
The support on-call escalated by phone. Lantern's own alert state was correct, so diagnosis was quick once someone looked.

## Action items
- SRE-601: Move Beacon provider credentials into Strongbox with expiry alerts (Owner: Oluwaseun Adeyemi) – done April 2025.
- SRE-602: Dead man's switch from Lantern to Beacon (Owner: Oluwaseun Adeyemi) – done April 2025.
- SRE-603: Second notification provider (SMS/voice) – design doc "Paging redundancy for Beacon" (Owner: Tomasz Wierzbicki). Delayed by procurement; shipped February 2026.
- SRE-604: Heartbeat test page every 30 minutes (Owner: SRE).
""")

LOGIN_FINAL = r"""
# Postmortem: SSO login outage – 17 April 2025

Incident: INC-2025-041 · Severity: P1 · Date: Thursday 17 April 2025 · Customer impact: 2 h 14 min (09:12–11:26 UTC) · IC: Tomasz Wierzbicki · Ops lead: Jonas Lindqvist · Comms: Chloe Marchetti · Status: **Final**, reviewed 29 April 2025

## Summary
During a manual rotation of Gatehouse v2 signing keys, the new key was published in the JWKS and activated in the same step. The API gateway cached the JWKS for 60 minutes and did not refetch when it saw an unknown key id. From 09:12 UTC every newly issued access token was signed with a key the gateway did not know, so customers could sign in to Gatehouse (password, Google, Microsoft or SAML SSO all succeeded) but the first API call returned 401, and the web app redirected back to login. Customers experienced an endless login loop. Existing sessions kept working until their 10-minute access token expired, so the outage grew over the first 10 minutes.

## Impact
- 2 h 14 min of failed logins for all customers on web and mobile; at the peak 97% of login attempts ended in a loop.
- Roughly 61,000 users affected; 1,870 support tickets, 11 enterprise escalations.
- Fernwick Pay hosted checkout was not affected (it does not require login). Recurring payments ran normally.
- Staff tools using Gatehouse v2 (Shipyard, Lantern, Quarry) were also affected, which slowed the response: Lantern logins failed for engineers who were not already signed in.
- SLO: April login availability 99.69% against a 99.95% target; the quarterly error budget was exhausted.

## Timeline (UTC)
- 08:55 Jonas starts the monthly manual key rotation using the phase 1 procedure ("create key, activate, verify JWKS").
- 09:02 `gatehousectl keys create --activate` run. The new key (kid `gh-2025-04`) is published and active at once.
- 09:12 Token verify failures at the API gateway start climbing as old access tokens expire.
- 09:18 `GatehouseLoginSuccessRateLow` does **not** fire – logins at Gatehouse succeed. Support reports "login loop".
- 09:26 Customer Success raises it in #incidents. P1 declared at 09:31; IC Tomasz.
- 09:40 Engineers struggle to open Lantern (same problem). Break-glass Lantern account used.
- 09:58 Gateway logs show `unknown kid gh-2025-04`. Hypothesis: JWKS cache.
- 10:05 Attempt to roll back by re-activating the old key. Fails: the phase 1 tooling had already moved the old key to `revoked` instead of `retiring`.
- 10:20 Decision to restart gateway pods to force a JWKS refetch. Rolling restart of 64 pods takes 35 minutes because of connection draining settings.
- 10:55 First half of pods restarted; success rate 55%.
- 11:26 All pods restarted; login success back to normal.
- 12:10 All-clear after monitoring; status page resolved.

## Root cause
The key rotation procedure activated a key before verifiers had fetched it. The API gateway plugin was the only verifier not using the shared `fwauth` library; it cached the JWKS for 60 minutes (not 10) and had no refetch-on-unknown-kid behaviour.

## Contributing factors
- Login success rate was measured at Gatehouse, not end-to-end, so no alert fired for 14 minutes after impact.
- The old key was revoked immediately by the phase 1 tool, removing the quick rollback.
- Staff tools depended on the system that was down.
- Rolling restart of the gateway was slow (maxUnavailable 2 pods).

## What went well
Support and Customer Success escalated quickly. Status page updates every 20 minutes. Break-glass accounts worked.

## Action items
| Key | Action | Owner | Due |
|---|---|---|---|
| GATE-1212 | Automated key rotator: publish 24 h before activation, confirm fleet has fetched | Jonas Lindqvist | 2025-06-02 |
| GATE-1219 | API gateway uses `fwauth` 2.4 (10 min cache, refetch on unknown kid) | Jonas Lindqvist | 2025-05-09 |
| GATE-1220 | End-to-end login synthetic check (login + first API call) with paging alert | Oluwaseun Adeyemi | 2025-05-02 |
| GATE-1221 | Retiring keys stay valid 24 h; `revoke` only for compromise | Jonas Lindqvist | 2025-05-09 |
| PLAT-701 | Gateway rollout settings: maxUnavailable 25% during incidents | Callum Reid | 2025-05-16 |
| SRE-640 | Staff break-glass access to Lantern independent of Gatehouse | Tomasz Wierzbicki | 2025-05-30 |
| GATE-1222 | Rewrite key rotation runbook: "publish first, sign later" | Jonas Lindqvist | 2025-05-28 |
"""

add("pm-2025-04-login-outage", "Postmortem: SSO login outage (INC-2025-041)", "Jonas Lindqvist",
    "SRE/Postmortems", "postmortem", "2025-04-29", LOGIN_FINAL)

add("pm-2025-04-login-outage-draft", "DRAFT - Postmortem: login outage 17 April", "Jonas Lindqvist",
    "Engineering/Identity/Scratch", "postmortem", "2025-04-18", rep(
        LOGIN_FINAL,
        ("# Postmortem: SSO login outage – 17 April 2025",
         "# DRAFT – Postmortem: login outage 17 April\n\n_Draft written the day after. Numbers are preliminary; final version will be in SRE/Postmortems._"),
        ("Status: **Final**, reviewed 29 April 2025", "Status: **Draft**"),
        ("- Roughly 61,000 users affected; 1,870 support tickets, 11 enterprise escalations.",
         "- Roughly 55–65k users affected (TBC with analytics); ~1,800 support tickets."),
        ("- SLO: April login availability 99.69% against a 99.95% target; the quarterly error budget was exhausted.\n", ""),
        ("## What went well\nSupport and Customer Success escalated quickly. Status page updates every 20 minutes. Break-glass accounts worked.",
         "## What went well\nTBD – to collect in the review meeting on 24 April."),
        ("| GATE-1220 | End-to-end login synthetic check (login + first API call) with paging alert | Oluwaseun Adeyemi | 2025-05-02 |",
         "| TBD | End-to-end login alert | SRE? | TBD |"),
        ("| PLAT-701 | Gateway rollout settings: maxUnavailable 25% during incidents | Callum Reid | 2025-05-16 |\n", ""),
        ("| SRE-640 | Staff break-glass access to Lantern independent of Gatehouse | Tomasz Wierzbicki | 2025-05-30 |\n",
         "| TBD | Look at gateway restart speed | Platform? | TBD |\n"),
        ("| GATE-1222 | Rewrite key rotation runbook: \"publish first, sign later\" | Jonas Lindqvist | 2025-05-28 |", ""),
    ))

add("pm-2025-08-payments-latency", "Postmortem: Tollgate payment latency (INC-2025-077)", "Adaeze Okafor",
    "SRE/Postmortems", "postmortem", "2025-08-14", r"""
# Postmortem: Tollgate authorisation latency – 6 August 2025

Incident: INC-2025-077 · Severity: P1 · Date: Wednesday 6 August 2025 · Duration: 38 min at P1 (11:47–12:25 UTC), degraded from 11:20 · IC: Oluwaseun Adeyemi · Ops lead: Grace Nakamura

## Summary
p99 latency of `POST /v3/payments/authorize` rose from 640 ms to 4.2 s and about 6.8% of authorisation requests timed out at the client (Ledger and hosted checkout use a 5 s timeout). The cause was an invalid index on the `idempotency_keys` table in the payments PostgreSQL cluster: a migration the previous night rebuilt the index `idx_idem_merchant_key` with `CREATE INDEX CONCURRENTLY`, which failed halfway because of a lock timeout and left the index marked INVALID. The planner fell back to a sequential scan of a 430M-row table, queries took seconds, and Tollgate's database connection pool (max 40 per pod) was exhausted.

## Impact
- About 21,500 authorisations failed or timed out; roughly 40% of them succeeded on client retry.
- Estimated lost payment volume for merchants during the window: £1.9M (most recovered later through retries and payment links).
- Lunchtime peak in the UK made this the worst possible window.

## Timeline (UTC)
- 02:10 Migration PAY-861 runs (rebuild index to add `created_at` column). `CREATE INDEX CONCURRENTLY` hits `lock_timeout`; migration tool logs a warning and exits 0.
- 02:10–11:20 Low traffic hides the problem; p99 drifts up to 900 ms.
- 11:20 `TollgateAuthorizeP99High` (1.5 s) fires, warning only.
- 11:47 `TollgateAuthorizeP99Critical` pages; P1 declared 11:50.
- 11:55 Processor latency normal; Meridian ruled out (runbook step 1).
- 12:02 DB pool saturation at 100%; `pg_stat_activity` shows seq scans on `idempotency_keys`.
- 12:09 Dmitri Sokolov finds `indisvalid = false` on the index.
- 12:12 Tollgate scaled to 48 pods – makes it worse (more connections).
- 12:16 Index dropped and created again with `CREATE INDEX CONCURRENTLY` during traffic; completes 12:24.
- 12:25 p99 back under 700 ms. Scaled back down at 12:40.

## Root cause
A failed concurrent index build left an invalid index, and the migration tool treated the failure as success.

## Contributing factors
- The idempotency table's size (430M rows, 24-hour logical TTL but cleaned up weekly) made any missing index catastrophic.
- Scaling out increased pressure on the database.
- The P2 warning at 11:20 was not acted on for 27 minutes.

## What went well
The latency breakdown dashboard pointed at the idempotency store within minutes. Payments and DBA on-calls worked well together.

## Action items
- PAY-870: Migration tool fails on invalid indexes and checks `pg_index.indisvalid` after every concurrent build (Owner: Dmitri Sokolov).
- PAY-871: Move idempotency records out of PostgreSQL – Kestrel phase 3 design (Owner: Grace Nakamura).
- PAY-872: Daily job to delete idempotency rows older than 48 hours (Owner: Payments).
- PAY-873: Runbook: do not scale out Tollgate when DB pool is saturated (Owner: Adaeze Okafor) – done.
- SRE-655: Warning-level latency alerts post to #payments-oncall with an owner (Owner: SRE).
""")

add("pm-2025-10-email-spf", "Postmortem: invoice emails rejected after SPF change (INC-2025-093)", "Callum Reid",
    "SRE/Postmortems", "postmortem", "2025-10-24", r"""
# Postmortem: invoice emails rejected after SPF record change

Incident: INC-2025-093 · Severity: P2 · Dates: 15–16 October 2025 · Duration: 26 hours

## Summary
Marketing onboarded a new email campaign tool and asked for its domain to be added to the SPF record of `fernwick.example`. The DNS change (INFRA-2410) added one more `include:`, which pushed the record to 12 DNS lookups, above the SPF limit of 10. Receiving mail servers that enforce the limit (notably many Microsoft 365 tenants) treated our SPF as a permanent error; combined with our DMARC policy of `p=quarantine`, invoice emails sent on behalf of customers went to spam or were rejected.

## Impact
- About 18% of invoice and payment-reminder emails bounced or were quarantined over 26 hours (approx. 96,000 emails).
- Customers' clients did not receive invoices; several customers reported late payments as a result.

## Root cause
SPF lookup limit exceeded. The dns-lint check validates targets of CNAMEs but not TXT record semantics, and the PR was reviewed by SRE only, not by the Messaging team that owns email deliverability.

## Detection
Detected late: bounce rate alerts used a 24-hour window. A customer escalation on 16 October prompted investigation.

## Action items
- MSG-301: Move marketing email to a subdomain (`mail.fernwick.example`) with its own SPF (Owner: Messaging).
- INFRA-2415: Add SPF lookup counting to dns-lint (Owner: Oluwaseun Adeyemi).
- MSG-302: Bounce rate alert on a 1-hour window, paging above 5% (Owner: Messaging).
- INFRA-2416: CODEOWNERS – Messaging team on SPF/DKIM/DMARC records (Owner: Callum Reid).
""")

add("pm-2025-12-duplicate-charges", "Postmortem: duplicate charges after idempotency TTL change (INC-2025-118)", "Grace Nakamura",
    "SRE/Postmortems", "postmortem", "2025-12-09", r"""
# Postmortem: duplicate charges after idempotency store migration

Incident: INC-2025-118 · Severity: P1 · Date: 2 December 2025 (detected), 25 Nov – 2 Dec (exposure) · IC: Tomasz Wierzbicki · Postmortem owner: Grace Nakamura

## Summary
Kestrel phase 3 moved Tollgate idempotency records from PostgreSQL to Redis with a 1-hour TTL (rev 1 of the design). Ledger's recurring-payment retry job retries charges whose outcome was unknown (timeouts) after 2, 6 and 24 hours, reusing the same Idempotency-Key. With a 1-hour TTL the key had expired, so Tollgate treated the retry as a new payment. Where the original charge had in fact succeeded at the processor, the customer's client was charged twice.

## Impact
- 312 Fernwick customers affected; 1,046 duplicate charges totalling £48,210.
- All duplicates refunded by 4 December; Customer Success contacted each affected customer.
- Reported to both acquirers per contract; no regulatory notification required (Legal assessment by Ines Varga).

## Timeline (UTC)
- 25 Nov 10:00 Flag `payments.idem_redis_read` at 100%; PostgreSQL writes stopped on 26 Nov.
- 28 Nov First support ticket about a double charge, treated as a one-off.
- 2 Dec 09:30 Finance reconciliation flags 400+ duplicate pairs. P1 declared at 09:52.
- 2 Dec 10:40 Cause found. Mitigation: Ledger retry job paused (`ledger.recurring_retry_enabled=false`).
- 2 Dec 12:15 Redis TTL raised to 72 hours via config release (Shipyard canary, ~40 minutes).
- 2 Dec 13:00 Retry job re-enabled. Duplicate detection query added to the reconciliation report.

## Root cause
The TTL was chosen from an analysis of API clients only and did not consider Ledger's internal retry schedule, while our public documentation promises 24 hours of idempotency.

## Contributing factors
- No test tied the TTL to the documented contract.
- Dual-write period (one week) was shorter than the longest retry interval plus observation.
- Duplicate-charge detection ran only in the monthly reconciliation.

## Action items
- PAY-910: TTL 72 h and contract test (Owner: Grace Nakamura) – design doc rev 2.
- PAY-911: Daily duplicate-charge detection with alert (Owner: Eitan Shapiro).
- PAY-912: Ledger retry job checks payment status at Tollgate before retrying (Owner: Ledger team).
- PAY-913: Design review checklist item: "list every client and its retry schedule" (Owner: Adaeze Okafor).
""")

add("pm-2026-02-quarry-cost", "Postmortem: Quarry credit spike over the weekend (INC-2026-014)", "Kwame Mensah",
    "SRE/Postmortems", "postmortem", "2026-02-10", r"""
# Postmortem: Quarry credit spike

Incident: INC-2026-014 · Severity: P3 (cost) · Dates: 30 January – 2 February 2026

## Summary
A new customer-health dashboard in the BI tool was set to refresh every 5 minutes. One of its tiles joined `support_tickets` to `ledger_invoices_daily` without a date filter, producing an accidental cross join of ~2 billion rows. Each refresh ran for 4 minutes on an XL warehouse that never auto-suspended because the next refresh started immediately. Over the weekend this used about 4,800 credits (roughly £9,600), 40% of the monthly Quarry budget.

## Detection
The Plover budget alert at 80% fired on Saturday, but it was routed by email to the data platform lead, who was on PTO. Found Monday morning.

## Root cause
No guardrails on refresh frequency or per-query cost for dashboards, and an XL warehouse available to the BI service account.

## Action items
- DATA-2101: BI service account limited to M warehouses; statement timeout 120 s (Owner: Maribel Ocampo).
- DATA-2102: Minimum dashboard refresh interval of 1 hour unless approved (Owner: Kwame Mensah).
- FINOPS-40: Budget alerts go to the Data rotation in Beacon, not email (Owner: Maribel Ocampo).
- FINOPS-41: Resource monitors that suspend a warehouse at 150% of its daily budget (Owner: Maribel Ocampo).
""")

add("pm-2026-03-curlew-gameday", "Postmortem: Curlew failover game day (INC-2026-022)", "Tomasz Wierzbicki",
    "SRE/Postmortems", "postmortem", "2026-03-18", r"""
# Postmortem: Curlew failover game day

Incident: INC-2026-022 · Severity: P2 (declared during planned test) · Date: 10 March 2026, 22:00–23:40 UTC

## Summary
The first full regional failover from lon1 to dub1 under Project Curlew was run as a game day. The database promotions and scale-up worked within target (19 minutes). However, the procedure still included an old step that switched `api.fernwick.example` to a region-specific DNS name. Resolvers cached the previous record for up to 300 seconds and some corporate resolvers for much longer, so for 28 minutes about 15% of API traffic still went to lon1, where write endpoints had been put into read-only mode. Some customers got errors saving invoices during the test window.

## Impact
- ~4,100 failed write requests; low-traffic window, announced maintenance.
- Failover time to 95% traffic in dub1: 31 minutes (target 45). To 100%: 58 minutes.

## What went well
Patroni promotion of Ledger and payments databases in dub1 took 40 seconds each with 1.2 seconds of measured data loss, inside RPO. dub1 scaled to full profile in 11 minutes. Tollgate idempotency keys were present in dub1 (checked by replaying 500 test payments).

## What went wrong
The runbook mixed the old DNS approach with the new global load balancer weights; the design doc said DNS would not change.

## Action items
- SRE-780: Remove DNS steps from the failover runbook; use only `edgectl weights` (Owner: Tomasz Wierzbicki) – done 16 March.
- SRE-781: Runbook review by a second team before every game day (Owner: SRE).
- SRE-782: Next game day September 2026, including the mobile BFF.
""")

# ---------------------------------------------------------------------------
# Meeting notes
# ---------------------------------------------------------------------------

add("mn-heron-steering-2025-02-04", "Project Heron steering meeting – 4 Feb 2025", "Jonas Lindqvist",
    "Engineering/Meetings/Heron", "meeting_notes", "2025-04-18", r"""
# Project Heron steering – 4 February 2025

Attendees: Jonas Lindqvist (Identity lead), Priya Raman (VP Eng), Samir Qureshi (Security), Chloe Marchetti (Customer Success), Noor Haddad (PM), Callum Reid (Platform)

## Status
- Phase 1 (staff SSO) complete on 28 January. Shipyard, Lantern and Quarry now log in through Gatehouse v2. 612 staff users; 3 support tickets, all about bookmarks pointing at old login URLs.
- Phase 2 ramp starts 10 February. Flag `auth.gatehouse_v2_percent` plan: 1% (10 Feb), 10% (17 Feb), 50% (24 Feb), 100% (3 Mar). Rollback is setting the flag to 0; v1 sessions remain valid.
- Pen test (external) ran 20–31 January. Two medium findings: missing rate limit on `/token` for the refresh grant, and verbose error on SAML signature failure. Both fixed (GATE-1130, GATE-1131). No high or critical findings.

## Discussion
- Chloe asked for a customer comms plan: login page will look different. Agreed to add a banner two weeks ahead and a help-centre article.
- Samir wants HS256 acceptance removed no later than four weeks after 100%. Jonas agreed: target 31 March.
- Key rotation remains manual in phase 1 (runbook). Automation was moved to phase 2b because of capacity; Priya accepted the risk for now. _[Note added 18 April: this is the process that failed in INC-2025-041.]_

## Decisions
- Go for phase 2 ramp on 10 February.
- Customer SAML SSO GA moves to May to give Customer Success time to train.

## Action items
- Chloe: login page banner and help article by 7 Feb.
- Jonas: dashboard for v1 vs v2 session counts by 10 Feb.
- Callum: make sure API gateway plugin is on the list of verifiers to upgrade (GATE-1140).
- Samir: retest pen test findings by 14 Feb.
""")

add("mn-heron-retro-2025-05-06", "Heron retrospective after the April login outage", "Noor Haddad",
    "Engineering/Meetings/Heron", "meeting_notes", "2025-05-06", r"""
# Heron retrospective – 6 May 2025

Facilitator: Noor Haddad · Attendees: Identity team, Tomasz Wierzbicki, Callum Reid, Chloe Marchetti, Priya Raman

Purpose: look at Project Heron as a whole after INC-2025-041 (17 April), not only at the incident.

**What went well**
- Phase 1 and 2 migrations themselves were smooth: 100% of customer logins on Gatehouse v2 by 3 March, p99 login latency 210 ms (goal 400 ms).
- Ledger primary read load dropped 19% after sessions moved to Redis.
- Pen test clean apart from two mediums.

**What did not go well**
- We deferred key rotation automation to save two weeks, and kept a manual process with a dangerous "create and activate" shortcut.
- The API gateway was a verifier we did not own and did not test. Nobody had a list of all verifiers.
- Our monitoring measured Gatehouse's view of success, not the customer's.
- Staff tools behind the same SSO made the incident harder to fight.

**Themes**
1. "Defer the boring part" decisions need an explicit risk entry, not a line in steering notes.
2. Inventory of consumers (verifiers, clients) should be part of every platform design doc. Adaeze pointed out Payments will need the same for Kestrel.

**Actions**
- Noor: add "consumer inventory" and "deferred risks" sections to the design doc template (by 20 May).
- Jonas: finish automated rotator (GATE-1212) before any further manual rotation; next rotation is postponed until then.
- Tomasz: SRE-640 break-glass Lantern login.
- Chloe: share customer feedback themes with the team (done in meeting: top complaint was lack of status page detail in the first 30 minutes).
""")

add("mn-kestrel-sync-2025-06-12", "Kestrel weekly sync – 12 Jun 2025", "Adaeze Okafor",
    "Engineering/Meetings/Kestrel", "meeting_notes", "2025-06-12", r"""
# Kestrel weekly sync – 12 June 2025

Attendees: Adaeze Okafor, Grace Nakamura, Eitan Shapiro, Dmitri Sokolov, Farid Haddadi, Mei Lin Chua

## Rollout
- `payments.tollgate_v3_percent` at 25% since Monday. Authorisation success rate v3 97.9% vs v2 97.8% – within noise.
- p99 end-to-end: v3 690 ms, v2 1.08 s. Tollgate-internal p99 on v3 is 110 ms (goal 150 ms).
- One bug: v3 mapped ClearArc decline code `05` to `processor_error` instead of `do_not_honour`, which showed a misleading message in checkout. Fixed in PAY-842, deployed Tuesday.

## Pen test
External test of v3 API ran 2–6 June. One low finding (missing `Cache-Control: no-store` on a receipt endpoint). Fixed.

## Idempotency table
Dmitri: `idempotency_keys` now 418M rows. Autovacuum runs take 8–9 hours. Recommends an index rebuild to add `created_at` so the weekly clean-up does not scan, planned as migration PAY-861. Grace wants the Redis design (phase 3) drafted in August.

## Decisions
- Go to 100% on 23 June if no P2+ incidents involving v3 before then.
- Phase 2 (capture/refund) starts 1 July.

## Action items
- Grace: go/no-go checklist for 100% by 19 June.
- Dmitri: schedule PAY-861 migration outside month-end freeze (target early August).
- Eitan: update merchant-facing docs for new decline codes.
- Mei Lin: load test v3 at 1,200 auth/s in staging (3x current peak).
""")

add("mn-kestrel-sync-2025-08-07", "Kestrel weekly sync – 7 Aug 2025 (post-incident)", "Adaeze Okafor",
    "Engineering/Meetings/Kestrel", "meeting_notes", "2025-08-07", r"""
# Kestrel weekly sync – 7 August 2025

Attendees: Adaeze Okafor, Grace Nakamura, Eitan Shapiro, Dmitri Sokolov, Mei Lin Chua, Oluwaseun Adeyemi (guest)

Most of this sync was about yesterday's P1 (INC-2025-077, authorisation latency, 38 minutes).

## Quick recap
The PAY-861 index rebuild failed at 02:10 with a lock timeout and left `idx_idem_merchant_key` INVALID; the migration tool exited 0. Sequential scans on `idempotency_keys` exhausted the connection pool at lunchtime peak. Fixed by rebuilding the index at 12:16. Postmortem owner: Adaeze, draft by 13 August.

## Discussion
- Scaling Tollgate out during the incident made things worse. Oluwaseun will add a warning to the latency runbook.
- Grace: this moves the Redis idempotency store from "nice to have" to priority for phase 3. Target design review early September, rollout in November before the December freeze.
- Dmitri wants the weekly clean-up to become daily and to keep only 48 hours of rows until Redis lands.
- Eitan: merchants are asking whether they were charged twice because of client retries. Answer: no – idempotency held; failures were timeouts before the processor call in 91% of cases. For the remaining 9%, the processor status check prevented double authorisation.

## Decisions
- Phase 2 capture/refund work continues but no new ramps until the postmortem actions PAY-870 and PAY-872 are done.
- Redis idempotency store is the main phase 3 deliverable.

## Action items
- Dmitri: PAY-870 (migration tool checks `indisvalid`) by 15 Aug.
- Grace: Redis design doc by 5 Sep.
- Adaeze: postmortem draft by 13 Aug, review 14 Aug.
- Eitan: FAQ for Customer Success on the incident.
""")

add("mn-kestrel-sync-2025-11-20", "Kestrel weekly sync – 20 Nov 2025", "Adaeze Okafor",
    "Engineering/Meetings/Kestrel", "meeting_notes", "2025-12-03", r"""
# Kestrel weekly sync – 20 November 2025

Attendees: Adaeze Okafor, Grace Nakamura, Eitan Shapiro, Mei Lin Chua, Tomasz Wierzbicki (Curlew)

## Phase 3 – Redis idempotency store
- Dual-write to PostgreSQL and Redis running since 18 November. Mismatch rate 0.002% (all in-flight requests at comparison time).
- Plan: `payments.idem_redis_read` to 100% on 25 November, stop PostgreSQL writes on 26 November, truncate the table after the December freeze.
- TTL 1 hour as per the design (rev 1). Memory at 14 GB of 48 GB.
- Tomasz confirmed `tollgate-idem` replicates to dub1 (Curlew requirement) – replication lag p99 40 ms.

## Risks raised
- Mei Lin asked whether any internal client retries later than an hour. Grace: API client analysis showed 99.7% within 10 minutes. Action to double-check internal callers was taken but not completed before rollout. _[Added 3 Dec: Ledger's recurring retry job retries after 2, 6 and 24 hours – see INC-2025-118.]_

## Tollgate v2 removal
v2 code deleted from the main branch on 14 November; the v2 deployment is scaled to zero and will be removed after 30 days.

## December freeze
Freeze starts 15 December. Anything after 12 December needs a freeze exception.

## Action items
- Mei Lin: confirm retry behaviour of all internal Tollgate callers (Ledger, Payouts, checkout) by 24 Nov.
- Grace: flip `payments.idem_redis_read` on 25 Nov at 10:00.
- Eitan: draft the Kestrel GA announcement for early December.
""")

add("mn-osprey-sync-2024-05-15", "Osprey sync – finance marts parallel run", "Maribel Ocampo",
    "Data/Meetings/Osprey", "meeting_notes", "2024-05-15", r"""
# Osprey sync – 15 May 2024

Attendees: Maribel Ocampo, Kwame Mensah, Rafael Mendes, Dmitri Sokolov, Ana Sousa (Finance)

## April month-end parallel run
- `fin_revenue_daily` in Quarry vs reportdb: totals match to the penny for all 31 days of April after fixing timezone handling (invoices issued between 23:00 and 00:00 UK time were assigned to the wrong day in Quarry – DATA-1620).
- `fin_ar_aging`: 0.3% difference in the 60–90 day bucket. Cause: reportdb view counts partially paid invoices by original amount, Quarry by outstanding amount. Rafael confirmed Quarry's logic is the correct one; Finance will document the change.
- `fin_payouts`: not yet built; waiting for `payments.events` schema contract (April).

## Freshness
Since the schema contracts and quarantine went live, zero failed batches in April. Median raw freshness 18 minutes; finance marts ready at 04:40 on average (target 06:00).

## Dashboards
Kwame: 22 of the 60 priority dashboards rebuilt. Usage data confirms 71 reportdb views with no queries in 90 days; proposal to drop them in June.

## Decisions
- Finance needs two clean month-ends **including** payouts before cutover, so cutover moves from Q3 2024 to early 2025.
- Drop the 71 unused reportdb views on 3 June after a notice in #data-announce.

## Action items
- Kwame: `fin_payouts` mart by end of June.
- Ana: write up AR aging definition change for the Finance handbook.
- Maribel: announce view removal by 20 May.
""")

add("mn-osprey-cutover-2025-04-30", "Osprey cutover go/no-go – 30 Apr 2025", "Maribel Ocampo",
    "Data/Meetings/Osprey", "meeting_notes", "2025-04-30", r"""
# Osprey cutover go/no-go – 30 April 2025

Attendees: Maribel Ocampo, Kwame Mensah, Rafael Mendes, Ana Sousa, Dmitri Sokolov, Priya Raman

## Criteria check
| Criterion | Status |
|---|---|
| Two clean month-end closes on Quarry (Feb, Mar 2025) | ✅ both closed on day 3 |
| All 60 priority dashboards rebuilt | ✅ 60/60, plus 14 new ones |
| Finance sign-off on reconciliations | ✅ Rafael, 28 April |
| reportdb consumers identified | ⚠️ 3 remaining: the legacy CS export script, the partner commission spreadsheet, a cron job in the Sales Ops server |
| Runbooks (backfill, access) updated | ✅ |

## Discussion
- The three remaining reportdb consumers all have owners and migration tickets (DATA-1902..1904). Agreed they do not block cutover; reportdb goes read-only but stays up until 30 September.
- Dmitri: switching off reportdb frees one large replica, about £2,400 per month (counts towards Plover).
- Access: Quarry VPN requirement to be dropped once device checks at SSO are in place (Heron phase 2 delivered this). Kwame to update the access runbook.

## Decision
**Go.** Cutover on Tuesday 6 May 2025: BI tool default connection switched to Quarry, reportdb set read-only at 08:00. Announcement in #announcements on 1 May.

## Action items
- Maribel: announcement (1 May).
- Kwame: access runbook update, new `payments_reader` role.
- Dmitri: read-only switch on 6 May; shutdown plan for 30 September.
""")

add("mn-curlew-planning-2025-10-08", "Curlew go-live readiness review – 8 Oct 2025", "Tomasz Wierzbicki",
    "Engineering/Meetings/Curlew", "meeting_notes", "2026-03-18", r"""
# Curlew go-live readiness – 8 October 2025

Attendees: Tomasz Wierzbicki, Oluwaseun Adeyemi, Callum Reid, Dmitri Sokolov, Jonas Lindqvist, Grace Nakamura, Hannah Voss (for the decision)

## Readiness by component
- **Kubernetes `k8s-prod-dub1`:** live since July. All in-scope services deployed by Shipyard with `--region dub1`.
- **Ledger + payments PostgreSQL:** standby clusters in dub1; replication lag median 190 ms, p99 2.1 s.
- **Kafka MM2:** replicating `ledger.events`, `payments.events`, `auth.events`. Offset translation tested with Sluice consumers.
- **Gatehouse:** JWKS and signing keys replicated via Strongbox; sessions Redis replicated. Jonas confirmed the key rotator checks verifier fleets in both regions.
- **Tollgate idempotency:** still on PostgreSQL (replicated); Redis store (Kestrel phase 3) must replicate before we call DR complete. Grace: planned for November.
- **Traffic:** 1% of read-only GETs to dub1 since 29 September, no errors above baseline.

## Gaps
- Mobile BFF not in dub1 (out of scope phase 1). Accepted.
- Failover runbook still has the old DNS switch step from the first draft – Oluwaseun to clean up. _[Not done before the March 2026 game day; see INC-2026-022.]_

## Decisions
- Increase read traffic to 10% on 20 October.
- Announce dub1 live for DR on 12 November if Kestrel Redis replication is in place.
- First full game day in March 2026, low-traffic window, with customer notice 2 weeks ahead.

## Actions
- Oluwaseun: runbook DNS cleanup (SRE-744).
- Tomasz: game day plan and customer notice template.
- Callum: Shipyard guard that rejects single-region deploys for in-scope services from November.
""")

add("mn-curlew-gameday-prep-2026-03-03", "Curlew game day prep – 3 Mar 2026", "Tomasz Wierzbicki",
    "Engineering/Meetings/Curlew", "meeting_notes", "2026-03-05", r"""
# Curlew game day preparation – 3 March 2026

Attendees: Tomasz Wierzbicki, Oluwaseun Adeyemi, Dmitri Sokolov, Grace Nakamura, Chloe Marchetti

Game day: **Tuesday 10 March 2026, 22:00–00:00 UTC**. Customer notice sent 24 February (maintenance window, possible brief errors).

Roles: IC Tomasz; ops lead Oluwaseun; DB Dmitri; payments Grace; comms Chloe; scribe Hana Petrov.

Plan (from the regional failover runbook):
1. 22:00 freeze deploys, snapshot metrics.
2. 22:05 lon1 Ledger API into read-only mode to simulate region loss for writes.
3. 22:10 promote Ledger and payments databases in dub1.
4. 22:15 shift traffic, scale dub1 to full profile.
5. 22:45 verification: 500 synthetic payments with replayed idempotency keys, invoice create/send, login.
6. 23:15 decide failback now or next morning (default: fail back the following night).

Success criteria: 95% of traffic on dub1 within 45 minutes; data loss under 5 seconds; no duplicate payments.

Open question from Chloe: do we need to tell enterprise customers individually? Agreed: account managers email the 14 customers with DR clauses.

Action items
- Oluwaseun: walk through the runbook end to end on staging by 6 March. (Done 5 March – but staging has no DNS for the public zone, so the leftover DNS step was not exercised.)
- Grace: prepare the synthetic payment replay script.
- Chloe: status page maintenance entry.
""")

add("mn-sre-ops-review-2024-11-25", "SRE weekly ops review – 25 Nov 2024", "Oluwaseun Adeyemi",
    "SRE/Meetings", "meeting_notes", "2024-11-25", r"""
# SRE weekly ops review – 25 November 2024

Attendees: SRE team, Callum Reid, Dmitri Sokolov, on-call primaries from Ledger and Payments

## Incidents this week
- INC-2024-112 (DNS misconfiguration, P1, 12 Nov) – postmortem published 19 Nov. Action items INFRA-2231..2235. dns-lint prototype ready, review Wednesday.
- INC-2024-115 (P3) – Lantern dashboards slow for 2 hours after a Prometheus compaction. No customer impact.

## Pages
41 pages last week (target under 25). Top offenders:
1. `LedgerWorkerQueueDepth` – 12 pages, all self-resolving within 5 minutes during the 09:00 recurring invoice batch. Proposal: raise threshold from 5,000 to 20,000 and require 10 minutes. Ledger agreed.
2. `TollgateMeridianErrorRate` – 8 pages, all during Meridian's announced maintenance on Thursday night. Action: silence processor maintenance windows automatically from the partner calendar.
3. `NodeDiskPressure` on CI runners – not a production issue; move to ticket-only.

## Change freeze
December freeze from 16 December 2024 to 6 January 2025. Teams must land dependency upgrades by 13 December.

## Actions
- Callum: threshold change for `LedgerWorkerQueueDepth` (SRE-540).
- Oluwaseun: partner-calendar-based silences (SRE-541).
- Dmitri: Ledger DB minor version upgrade before the freeze (CHG-3120, 10 Dec).
""")

add("mn-sre-ops-review-2025-09-15", "SRE weekly ops review – 15 Sep 2025", "Oluwaseun Adeyemi",
    "SRE/Meetings", "meeting_notes", "2025-09-15", r"""
# SRE weekly ops review – 15 September 2025

Attendees: SRE team, Grace Nakamura, Jonas Lindqvist, Kwame Mensah

## Incidents
None above P3 this week. INC-2025-085 (P3): Sluice `payments_events` loader lagged 7 hours after a Quarry maintenance window; self-recovered.

## SLOs (August)
- Gatehouse login availability 99.98% (SLO 99.95%). Automated key rotation has now run three times without incident.
- Tollgate authorisation availability 99.91% (SLO 99.95%) – breached because of INC-2025-077. Error budget freeze policy: only reliability work on Tollgate until the budget recovers (expected mid-October).
- Ledger API 99.97%.

## Pages
19 pages (target under 25) – first week below target since June.

## Beacon second provider
Procurement (VEND-233) still in legal review. Tomasz escalated to Ines Varga. Risk accepted until end of Q4; dead man's switch and heartbeat are live.

## Curlew
Database replication to dub1 running for two weeks, lag p99 2.1 s. Kafka MM2 setup finishing this week.

## Actions
- Grace: Tollgate reliability backlog for error budget freeze (PAY-880 Redis design in review).
- Kwame: alert on Sluice loader lag > 2 hours (ticket-only).
- Tomasz: follow up VEND-233.
""")

add("mn-eng-leadership-2024-12-10", "Engineering leadership – Q1 2025 OKR planning", "Priya Raman",
    "Leadership/Meetings", "meeting_notes", "2024-12-10", r"""
# Engineering leadership – 10 December 2024 – Q1 2025 OKR planning

Attendees: Priya Raman (VP Eng), Hannah Voss (CTO), Adaeze Okafor, Jonas Lindqvist, Maribel Ocampo, Callum Reid, Tomasz Wierzbicki, Beatriz Cordeiro, Noor Haddad

## Draft Q1 2025 engineering OKRs
**O1: Customers can always sign in and pay.**
- KR1: Gatehouse v2 serving 100% of customer logins by 31 March (Project Heron).
- KR2: Tollgate v3 design approved and shadow traffic running by 31 March (Project Kestrel).
- KR3: Zero P1 incidents caused by configuration or DNS changes.

**O2: Finance runs on one source of truth.**
- KR1: Two clean month-end closes on Quarry (Project Osprey).
- KR2: 60 priority dashboards migrated.

**O3: Engineers spend less time on toil.**
- KR1: Pages per week under 25 (currently 38).
- KR2: Median deploy time with Shipyard under 45 minutes (currently 61).

## Discussion
- Hannah questioned whether KR3 (zero P1s from config/DNS) is an output we control. Agreed to keep it as an aspiration, measured alongside completion of the INFRA-2231..2235 actions.
- Project Curlew: Hannah wants a design by April; no Q1 KR, but Tomasz gets time to write it.
- Project Wren mobile beta: Beatriz asks for one more engineer; Priya will move a contractor from Starling, which is paused until Q3.
- Headcount: 4 approved hires for Q1 (2 Payments, 1 SRE, 1 Data).

## Actions
- Each lead: final OKRs into the tracker by 17 December.
- Priya: headcount plan to Finance by 20 December.
- Tomasz: Curlew design doc outline by end of January.
""")

add("mn-eng-leadership-2025-07-08", "Engineering leadership – mid-year review and Q3 OKRs", "Priya Raman",
    "Leadership/Meetings", "meeting_notes", "2025-07-08", r"""
# Engineering leadership – 8 July 2025 – mid-year review

Attendees: Priya Raman, Hannah Voss, Adaeze Okafor, Jonas Lindqvist, Maribel Ocampo, Callum Reid, Tomasz Wierzbicki, Noor Haddad, Beatriz Cordeiro

## H1 results
- Heron: done (100% on 3 March) but INC-2025-041 in April cost us the quarter's login error budget. Automated rotation live since 2 June.
- Kestrel: v3 at 100% for authorisations since 23 June, two weeks ahead of plan. p99 690 ms.
- Osprey: cutover 6 May; reportdb off on 30 September.
- Toil: pages per week 27 (from 38). Deploy time median 48 minutes.
- Wren: mobile redesign launched to all users 2 June; app store rating 4.1 → 4.5.

## Q3 OKRs
**O1: Survive the loss of a region.** KR: Curlew dub1 serving 10% of read traffic by 30 September; DR go-live in Q4.
**O2: Cheaper per payment.** KR: 95% of cloud spend tagged by 30 September (Plover); cost per payment down 5%.
**O3: Customers onboard themselves.** KR: Starling self-serve signup spec final and beta with 200 signups.
**O4: Find things faster.** KR: Magpie design and a labelled evaluation set of 300 queries.

## Discussion
- Noor and Callum argued Magpie is small but high leverage for on-call; agreed to staff it with 2 engineers from Internal Tools.
- Starling restarts with Grace Nakamura as tech lead after Kestrel phase 2.
- Hiring: SRE role still open after 4 months; raise band.

## Actions
- Leads: Q3 OKRs into the tracker by 15 July.
- Priya: SRE compensation band review with People Ops.
- Noor: Magpie kickoff in September.
""")

add("mn-plover-finops-2025-07-22", "Plover FinOps review – July 2025", "Rafael Mendes",
    "Finance/Meetings/Plover", "meeting_notes", "2025-07-22", r"""
# Plover FinOps review – 22 July 2025

Attendees: Rafael Mendes, Callum Reid, Maribel Ocampo, Adaeze Okafor, Tomasz Wierzbicki

## Numbers (June 2025)
- Cloud spend £131k (May £127k). Curlew dub1 adds £9k so far.
- Tagged: 81% (target 95% by 30 September). Biggest untagged: legacy EC2 instances in the `shared-services` account (£7k), old snapshots (£2k).
- Quarry: 9,200 credits (budget 10,000). Data Platform 46%, Analytics 31%, Product 14%, other 9%.
- Unit costs (first cut): £0.0041 per invoice sent, £0.0112 per payment authorised.

## Savings delivered
- Node pool rightsizing in lon1: −£6.2k/month.
- reportdb replica removal scheduled for 30 September: −£2.4k/month.

## Discussion
- Tomasz: dub1 will grow to ~£38k/month by November, as estimated in the Curlew design. Savings plan commitment should wait until dub1 is sized.
- Adaeze: Tollgate pods are overprovisioned after v3 (v3 uses 40% less CPU). Will reduce requests, est. −£1.5k/month.
- Maribel: Quarry warehouses already auto-suspend at 60 s. Asks teams to stop using XL for ad hoc work.

## Actions
- Callum: tag or delete `shared-services` legacy instances by 31 August (FINOPS-22).
- Adaeze: Tollgate resource requests (PAY-855).
- Rafael: savings plan proposal for November.
""")

add("mn-plover-finops-2026-02-17", "Plover FinOps review – February 2026", "Rafael Mendes",
    "Finance/Meetings/Plover", "meeting_notes", "2026-02-17", r"""
# Plover FinOps review – 17 February 2026

Attendees: Rafael Mendes, Callum Reid, Maribel Ocampo, Kwame Mensah, Adaeze Okafor

## Numbers (January 2026)
- Cloud spend £158k (forecast £164k) including dub1 at £36k.
- Tagged: 96% ✅.
- Cost per payment authorised: £0.0097 (−13% since June 2025; target −15% by Q2 2026).
- Quarry: 14,900 credits in January, including ~4,800 from the weekend incident INC-2026-014 (dashboard cross join).

## INC-2026-014 follow-up
Kwame walked through the postmortem. Actions DATA-2101/2102 done: BI account limited to M warehouses, 120 s timeout, minimum refresh 1 hour. FINOPS-40 (budget alerts to Beacon) done. FINOPS-41 resource monitors in progress.
Rafael asked whether we can recover the credits from the vendor – no; the contract has no provision for accidental usage.

## Savings plan
1-year compute savings plan purchased 1 December 2025 covering 70% of baseline compute: −£11.5k/month.

## Next
- Kafka tiered storage fully rolled out: −£2.8k/month measured.
- Next target: cross-region data transfer (£6.4k/month) – investigate MM2 compression.

## Actions
- Maribel: FINOPS-41 by end of February.
- Callum: MM2 compression test (FINOPS-45).
- Rafael: board pack slide on unit economics.
""")

add("mn-magpie-kickoff-2025-09-10", "Project Magpie kickoff", "Noor Haddad",
    "Engineering/Meetings/Magpie", "meeting_notes", "2025-09-10", r"""
# Project Magpie kickoff – 10 September 2025

Attendees: Noor Haddad (PM), Callum Reid, Lukas Brenner, Priyanka Das, Aoife Brennan (IT), Kwame Mensah

## Goal
One search across wiki, Tracker and Drive that finds the right page for real questions, measured with a labelled query set. Quarterly OKR: design + 300 labelled queries by 30 September, beta in Q4.

## Evidence gathered
- Wiki search logs, last 90 days: 48,000 searches, 37% followed by a second search within 30 seconds (reformulation), 22% with no click.
- Most common failing patterns: code names ("osprey cutover"), incident ids ("INC-2025-041"), acronyms ("pto carry over", "sso saml"), and how-to questions ("how do I roll back a deploy").
- Duplicate pages: at least 40 pages copied between spaces (e.g. the VPN guide in IT and in Sales onboarding; the new engineer onboarding in Engineering and in the Payments space). Users often land on the stale copy.

## Evaluation plan
Kwame and Priyanka will sample 300 queries from the logs, stratified by pattern. Each query gets up to 20 candidate documents labelled 0 (irrelevant) to 3 (exactly answers). Two labellers per query; disagreements resolved by a third. Metric: nDCG@10, plus recall@50 for the retrieval stage.

## Decisions
- Index wiki and Tracker first; Drive in phase 2.
- Chat messages out of scope pending privacy review.

## Actions
- Callum: design doc draft by 29 September.
- Kwame/Priyanka: labelling guidelines and tool by 19 September.
- Aoife: list of top IT helpdesk questions as extra queries.
""")

add("mn-wren-design-review-2024-10-02", "Wren design review – invoice creation flow", "Yuki Sato",
    "Product/Meetings/Wren", "meeting_notes", "2024-10-24", r"""
# Wren design review – new invoice creation flow – 2 October 2024

Attendees: Yuki Sato (Design), Beatriz Cordeiro (Mobile lead), Noor Haddad, Tariq Bello (Support lead), two customers on video (a plumber and a bookkeeper)

## Prototype walkthrough
The new flow has 3 steps instead of 6: customer → items → review & send. Line items can be added from history with one tap. "Scan a paper quote" (OCR) is a separate spec.

## Customer feedback
- Plumber: loved item history; wants VAT rate per line, not per invoice. Often on sites with no signal: "the app loses my draft".
- Bookkeeper: wants to see whether the client has opened the invoice; fine with the summary screen.

## Decisions
- Per-line VAT rates in the first release (Ledger already supports it; mobile UI only).
- Offline drafts in scope for Wren v1 – design doc by Beatriz (approved later as "Project Wren: offline invoice drafts on mobile").
- Invoice "opened" indicator on the list screen – already available via Ledger's tracking pixel.

## Open
- Accessibility: Yuki to run VoiceOver/TalkBack checks on the prototype.
- Tariq: support needs a way to see which app version a customer uses; add to the admin panel.

## Action items
- Beatriz: offline design doc by 23 Oct.
- Yuki: updated prototype with per-line VAT by 9 Oct.
- Noor: update the Wren PRD and share with Sales.
""")

add("mn-starling-sync-2025-11-04", "Starling weekly sync – 4 Nov 2025", "Noor Haddad",
    "Product/Meetings/Starling", "meeting_notes", "2025-11-04", r"""
# Starling weekly sync – 4 November 2025

Attendees: Noor Haddad, Grace Nakamura, Yuki Sato, Ines Varga, Liesbeth de Graaf (Growth marketing)

## Beta status
- Self-serve signup beta open to UK traffic from the pricing page since 20 October (10% of visitors).
- 1,240 signups started; 771 verified email (62%); 402 active (32% of started). Target for GA: 60% active within 24 hours.
- Biggest drop: business details step (VAT number lookup fails for sole traders who do not have one). Yuki: make VAT optional, ask "Are you VAT registered?" first.
- KYC pass rate 88%; median time 6 minutes; 9% go to manual review.

## Legal
Ines confirmed that invoicing-only tenants need no KYC, but Fernwick Pay activation does. Terms acceptance must be logged with version and timestamp – provisioner does this.

## Engineering
Grace: provisioner design in review; idempotency keys per step following the Tollgate lessons. Plan picker (separate spec) is blocked on pricing decision for the "Solo" plan.

## Decisions
- VAT number optional for sole traders (ship next week).
- Beta to 25% of UK traffic on 17 November if activation ≥ 40%.

## Actions
- Yuki: new business details screen.
- Liesbeth: onboarding email sequence test (3 emails over 7 days).
- Noor: pricing decision meeting with Marcus Feld and Rafael Mendes.
""")

add("mn-allhands-2024-12", "Company all-hands – December 2024", "Marcus Feld",
    "Company/All-hands", "meeting_notes", "2025-06-11", r"""
# All-hands notes – 12 December 2024

Host: Marcus Feld (CEO). Notes: Lena Hoffmann.

## Business update (Marcus)
- 41,300 paying customers (+18% year on year). ARR £38.6M.
- Fernwick Pay processed £2.1B in 2024, up from £1.3B.
- Net revenue retention 112%.
- We closed our first three accounting-firm partnerships; customer SSO (Project Heron) was the blocker for two of them.

## Engineering (Hannah Voss, CTO)
- Heron: staff SSO going live in January, customer login moves in February–March.
- Kestrel (payments gateway rewrite) kicks off in January.
- Osprey: finance reporting moves fully to Quarry in spring.
- Reliability: 4 P1 incidents in 2024, including the DNS outage in November. Thanks to everyone who helped that afternoon.

## People (Sofia Brandt)
- 212 employees across Bristol, Lisbon and Toronto; 46 joined this year.
- New PTO and leave policy from February 2025: minimum 15 days, carry-over capped at 5 days.
- Fernwick Days: office closure 24 December – 1 January.

## Q&A
- "Will we go back to the office more?" – No change planned for 2025 right now; we'll review the hybrid policy mid-year. (It was later updated to two anchor days from July 2025.)
- "Is there a pay review?" – Yes, in April as usual; budget is being set now.
- "What happens with the Lisbon office lease?" – We are moving to a larger office in Lisbon (Avenida da Liberdade) in spring 2025.
""")

add("mn-security-council-2025-03-18", "Security Council – Q1 2025", "Hiroshi Tanabe",
    "Security/Meetings", "meeting_notes", "2025-03-18", r"""
# Security Council – 18 March 2025

Attendees: Hannah Voss (chair), Hiroshi Tanabe, Priya Raman, Deepa Venkatesan, Ines Varga, Samir Qureshi

## Decisions
1. **Information Security Policy v4.2 approved.** Changes: just-in-time production access via Shipyard, business continuity objectives aligned with Project Curlew, vulnerability SLAs unchanged.
2. **Risk acceptance RISK-44** (Beacon single notification provider, after INC-2025-029) accepted until 30 September 2025 with compensating controls (dead man's switch, heartbeat).
3. **Phishing-resistant MFA for all staff** (not only admins) by end of 2025. IT to budget ~150 additional security keys.

## Reports
- Phishing simulation February: 4.1% click rate (December 6.8%); 71% report rate.
- Vulnerabilities: 0 critical overdue, 3 high overdue (all in the legacy Tollgate v2, which will be deleted by Kestrel phase 3).
- Access review Q1: 98% on time; 11 removals, 1 finding (contractor account still active 3 days after end date; fixed and offboarding script updated).
- SOC 2 Type II audit window for 2025 opens 1 April.

## Risk register – top 3
- RISK-31 Loss of primary region (16) – Curlew design in progress.
- RISK-38 Shared-secret tokens (12) – closing when HS256 acceptance is removed on 31 March (Heron).
- RISK-44 Paging single provider (12) – accepted, see above.

## Actions
- Deepa: security key procurement (IT-5120).
- Samir: Q2 access review kick-off on 1 April.
- Ines: review Curlew data residency question.
""")

# ---------------------------------------------------------------------------
# Onboarding
# ---------------------------------------------------------------------------

NEW_ENG = add(
    "onb-eng-new-engineer", "New Engineer Onboarding: your first 30 days", "Priya Raman",
    "Engineering/Onboarding", "onboarding", "2025-09-01", r"""
# New engineer onboarding – your first 30 days

Welcome to Fernwick engineering! This page is the checklist your manager and onboarding buddy will go through with you. Tick things off in your onboarding ticket (ONB project).

## Week 1 – get set up
- [ ] Laptop, SSO and security key enrolment with IT on day one (see "IT setup: laptop and accounts").
- [ ] Join chat channels: #engineering, #incidents, #deploys, #ask-platform, your team channel.
- [ ] Set up your development environment ("Local development environment setup"). Aim to run Ledger locally by day 3.
- [ ] Read the architecture overview and the glossary of code names (Heron, Kestrel, Osprey, Curlew…).
- [ ] Security awareness training in PeopleHub (due within 14 days).
- [ ] Meet your buddy daily for 15 minutes.

## Week 2 – ship something
- [ ] Pick a "good first ticket" from your team's board and get it reviewed (read the Code Review Guidelines first).
- [ ] Deploy it with Shipyard, with your buddy watching (`shipyard deploy`). Everyone ships in their first two weeks.
- [ ] Attend the Tuesday change review and the SRE weekly ops review once.

## Weeks 3–4 – go deeper
- [ ] Read three recent postmortems in SRE/Postmortems. We recommend INC-2025-041 (login outage), INC-2025-077 (payments latency) and INC-2024-112 (DNS).
- [ ] Shadow your team's on-call for a day.
- [ ] 1:1 with your skip-level manager.
- [ ] Write or improve one wiki page you found confusing.

## Access you will get later
Production access (`prod-readonly`) is requested by your manager after week 2; `prod-admin` only after on-call training. Quarry `analyst` role can be requested any time in the Access app.

## Who to ask
Your buddy first, then #ask-platform for tooling, #it-help for laptops and accounts, #ask-people for HR questions.
""")

add("onb-pay-new-engineer", "New Engineer Onboarding (Payments team copy)", "Adaeze Okafor",
    "Engineering/Payments/Team", "onboarding", "2025-08-25", rep(
        NEW_ENG,
        ("# New engineer onboarding – your first 30 days",
         "# New engineer onboarding – your first 30 days (Payments)\n\n_Copied from Engineering/Onboarding in March 2025 and adapted for the Payments team. If the two disagree, ask in #payments-eng._"),
        ("- [ ] Join chat channels: #engineering, #incidents, #deploys, #ask-platform, your team channel.",
         "- [ ] Join chat channels: #engineering, #incidents, #deploys, #ask-platform, #payments-eng, #payments-oncall, #payments-partners."),
        ("Aim to run Ledger locally by day 3.", "Aim to run Ledger and Tollgate locally by day 3 (Tollgate needs the processor sandbox credentials from Strongbox)."),
        ("- [ ] Security awareness training in PeopleHub (due within 14 days).",
         "- [ ] Security awareness training in PeopleHub (due within 14 days) and PCI DSS awareness training (Payments only, due within 30 days)."),
        ("and get it reviewed (read the Code Review Guidelines first).",
         "and get it reviewed (read the Code Review Guidelines first – Tollgate needs two approvals)."),
        ("We recommend INC-2025-041 (login outage), INC-2025-077 (payments latency) and INC-2024-112 (DNS).",
         "We recommend INC-2025-077 (payments latency), INC-2025-041 (login outage) and the Kestrel design doc."),
        ("- [ ] Shadow your team's on-call for a day.",
         "- [ ] Shadow the Payments on-call for a full week (Payments requires two shadow weeks before going primary)."),
    ))

add("onb-first-week", "Welcome to Fernwick: your first week", "Sofia Brandt",
    "People/Onboarding", "onboarding", "2025-01-06", r"""
# Welcome to Fernwick Labs!

We are glad you are here. Fernwick makes invoicing and payments simple for small businesses: Fernwick Ledger (invoicing, reminders, bookkeeping exports) and Fernwick Pay (card and bank payments on invoices and checkout pages). Around 210 of us work across Bristol, Lisbon and Toronto, and from home.

## Day one
- **09:30** Your manager meets you (in the office or on video).
- **10:00** IT setup: laptop, single sign-on, security key. Keep your phone handy for MFA.
- **11:30** People Ops welcome session: PeopleHub, payroll, benefits, PTO.
- **13:00** Lunch with your team (on us – claim it under "Team events" if remote).
- **15:00** Meet your onboarding buddy.

## In your first week
- Complete your profile in PeopleHub (photo, emergency contact, bank details).
- Security awareness training (about 45 minutes) – due within 14 days.
- Read the company handbook: values, how we make decisions, remote and hybrid work policy.
- Join the Thursday "Fernwick 101" session where a product manager demos Ledger and Pay.
- Book 30-minute intro chats with 5 people outside your team (your buddy will suggest names).

## Useful things to know
- Anchor days: your department has office days – check the Remote and Hybrid Work Policy.
- Expenses go through Expensa; travel through TripDesk.
- The company closes between Christmas and New Year (Fernwick Days).
- All-hands is on the second Thursday of each month at 16:00 UK time.

Questions? #ask-people or people@fernwick.example.
""")

add("onb-it-setup", "IT setup: laptop and accounts", "Aoife Brennan",
    "IT/Onboarding", "onboarding", "2024-08-12", r"""
# IT setup: laptop and accounts

Your laptop arrives enrolled in MDM, with the EDR agent, Fernwick Connect (VPN) and standard apps preinstalled.

1. **Sign in** with the temporary password from your welcome email. You will be asked to choose a new password (at least 12 characters, not used anywhere else).
2. **Security key**: plug in the key that came with your laptop and register it at sso.fernwick.example > Security. Register a second factor too (the authenticator app with number matching) as backup.
3. **Password manager**: accept the 1Password Business invite. Shared team credentials live in team vaults.
4. **Chat and email** open with SSO. Set a profile photo and your pronouns if you like.
5. **VPN**: follow the VPN Setup Guide. You need it for internal tools from outside the office.
6. **Printing** (Bristol and Lisbon): badge-release printing, set up via Self Service > Printers.
7. **Wi-Fi**: `Fernwick` uses your SSO certificate automatically; `Fernwick-Guest` is for visitors only.

Things IT will never do: ask for your password or MFA code, or ask you to install software from a link in an email. Report anything like that with the "Report phishing" button.

Need help? help.fernwick.internal or #it-help. Helpdesk hours 08:00–18:00 UK, 08:00–17:00 Toronto.
""")

add("onb-oncall-readiness", "Getting ready for on-call", "Oluwaseun Adeyemi",
    "Engineering/Onboarding", "onboarding", "2025-04-14", r"""
# Getting ready for on-call

Most engineering teams at Fernwick run an on-call rotation (see the SRE On-call Policy). Before you go primary you will complete this path, usually in your second and third months.

**1. Learn the tools (about 2 hours)**
- Beacon: install the mobile app, set notification rules, run `beacon test-page --me`.
- Lantern: find your service's dashboards and alerts. Learn to silence an alert with a reason and expiry.
- Shipyard: practise `history`, `rollback` and `pin` on staging.
- `/incident declare` in chat – try it in #incident-sandbox.

**2. Read (about 3 hours)**
- Incident Severity Levels and Declaration.
- Your team's runbooks. For Identity: login failures and key rotation. For Payments: Tollgate latency and processor switching. For Data: Quarry backfill.
- Three postmortems, at least one from your team.

**3. Shadow two rotations**
You receive all pages as a shadow. During working hours, join the primary on every incident. Write one handoff note yourself.

**4. Incident commander basics (1-hour session, monthly)**
Run by Tomasz Wierzbicki. Covers roles (IC, ops lead, comms, scribe), status page updates, when to escalate.

**5. Sign-off**
Your manager and the current primary agree you are ready. Request `prod-admin` eligibility in the Access app, referencing your sign-off.

Tip: it is always OK to escalate. Waking the secondary at 03:00 for a possible P1 is the right call.
""")

add("onb-data-team", "Data team onboarding", "Maribel Ocampo",
    "Data/Onboarding", "onboarding", "2026-02-16", r"""
# Data team onboarding

Welcome to Data Platform & Analytics. We own Quarry (the warehouse), the Sluice ingestion pipelines, the dbt project `quarry-models`, and the BI tool.

## Week 1
- Request the Quarry `analyst` role (Access app) on day one, and `pii_reader` only if your role needs it – ask Maribel.
- Clone `quarry-models` and run `dbt build --select tag:finance --target dev` against your dev schema.
- Read the Project Osprey design doc (history of why reportdb was retired) and the "Schema contracts for event pipelines" doc.
- Read INC-2024-008 (stale finance marts) and INC-2026-014 (the weekend cost spike). Between them they explain most of our guardrails.

## Conventions
- Models: `stg_` for staging, `int_` intermediate, marts without prefix in `finance`, `product`, `payments`, `support` schemas.
- Every mart has an owner, a description and at least `unique` + `not_null` tests on the key.
- Use warehouses S or M for development. L and above need a reason (Plover budgets).
- Don't schedule dashboards to refresh more often than hourly without approval.

## Rotations
The Data rotation in Beacon covers freshness of finance marts seven days a week. You join after 6 weeks and one shadow week.

## People
Maribel Ocampo (lead), Kwame Mensah (analytics), Priyanka Das (analytics engineering), Jorge Alves (data platform, Lisbon).
""")

add("onb-sales", "Sales onboarding: first two weeks", "Chloe Marchetti",
    "Sales/Onboarding", "onboarding", "2025-06-16", r"""
# Sales onboarding – first two weeks

Welcome to the Sales team! Your first two weeks are about the product, our customers and our tools. You will shadow calls from day 3 and run your first discovery call in week 3.

**Week 1**
- Fernwick 101 (Thursday) – Ledger and Pay demos.
- Product certification part 1 in the LMS: invoicing, reminders, recurring invoices, bookkeeping exports.
- CRM training with Sales Ops (Tuesday 14:00). Learn stages: Discovery → Demo → Trial → Proposal → Closed.
- Shadow at least 5 calls (recordings in the call library tagged "great discovery").
- VPN: follow the Sales copy of the VPN Setup Guide – you need it on customer sites for the CRM admin pages.

**Week 2**
- Product certification part 2: Fernwick Pay, pricing plans (Starter, Growth, Business), security questions.
- Learn our answers on security: SOC 2 Type II, PCI DSS Level 1, UK and EU hosting (lon1 and, from late 2025, dub1), SSO on Business plan.
- Role-play a demo with your manager.
- Meet Customer Success and Support to understand handover after closed-won.

**Key numbers to know** (2024): 41k paying customers; average Growth plan customer sends 62 invoices per month; Fernwick Pay gets invoices paid 9 days faster on average.

Your buddy: assigned by your manager. Questions: #sales-enablement.
""")

add("onb-support", "Customer Support onboarding", "Tariq Bello",
    "Support/Onboarding", "onboarding", "2025-05-12", r"""
# Customer Support onboarding

Welcome to Support! We answer about 6,500 conversations a month in chat and email, in English and Portuguese.

## First week
- Shadow a senior agent for three days. Watch how they use the admin panel (read-only impersonation with customer consent).
- Learn the macros for the top 20 topics: login issues, invoice not received, payment failed, payout timing, bank feed not syncing, VAT settings.
- Read the incident process: when several customers report the same problem within 15 minutes, post in #incidents with examples. Do not wait for certainty – in INC-2025-041 support spotted the login loop before our monitoring did.

## Rules
- Never ask customers for full card numbers or passwords. If a customer sends card data, delete the message and use the "PCI redaction" macro.
- Screenshots in tickets: crop amounts and client names unless the customer has consented (Data Classification Policy).
- Refunds over £500 need a team lead.

## Escalation paths
- Tier 2 (senior agents) for bugs and account problems.
- Engineering via Tracker project SUP with a reproducible case; P1/P2 via #incidents.
- Payments questions about chargebacks go to the Payments Ops team (#payments-ops).

## Targets
First response: 2 hours for chat, 8 business hours for email. CSAT goal 92%.
""")

add("onb-manager", "New manager onboarding", "Sofia Brandt",
    "People/Onboarding", "onboarding", "2025-02-10", r"""
# New manager onboarding

Whether you joined as a manager or were promoted, these are the things to do in your first 60 days.

**First two weeks**
- Get manager permissions in PeopleHub (People Ops sets this up when the change is recorded). You approve PTO, expenses under £750 and access requests for your team.
- 1:1 with each report: their goals, how they like feedback, current worries.
- Read the policies you will be asked about most: PTO and Leave, Remote and Hybrid Work, Parental Leave, Expenses.
- Review your team's on-call rotation and make sure nobody is on call more than one week in four.

**First 60 days**
- Complete the "Managing at Fernwick" course (4 sessions, run quarterly by People Ops).
- Learn the performance cycle: mid-year check-in in July, annual review in January, pay review in April.
- Understand your budget: team events (£40/person/quarter), learning (£300/person/year), travel.
- If you manage engineers: join the quarterly access review for your systems and the Tuesday change review.

**Things to escalate to People Ops early**
Health issues, performance concerns, conflicts, any mention of harassment or discrimination, and visa questions.

Your People Partner is listed in PeopleHub under your department.
""")

add("onb-glossary", "Glossary: acronyms and code names", "Noor Haddad",
    "Company/Onboarding", "onboarding", "2025-10-01", r"""
# Glossary: acronyms and code names at Fernwick

**Products and systems**
- **Ledger** – Fernwick Ledger, the invoicing product, and the `ledger-api` service behind it.
- **Fernwick Pay / Tollgate** – our payments product; Tollgate is the payments gateway service.
- **Gatehouse** – login and identity service (customers and staff tools).
- **Shipyard** – internal deploy tool (`shipyard deploy`, `shipyard rollback`).
- **Lantern** – dashboards and alerting.
- **Beacon** – on-call schedules and paging.
- **Quarry** – data warehouse. **Sluice** – pipelines that load data into Quarry.
- **Strongbox** – secrets manager.
- **Semaphore** – feature flags.
- **Fernwick Connect** – corporate VPN.
- **PeopleHub** – HR system (PTO, payroll, training). **Expensa** – expenses. **Tracker** – tickets (keys like INFRA-2231, PAY-910).
- **lon1 / dub1** – our primary and secondary production regions.

**Project code names**
- **Heron** – Gatehouse v2, SSO for customers and staff (2024–2025).
- **Kestrel** – Tollgate v3 payments gateway rewrite (2025).
- **Osprey** – moving reporting from reportdb to Quarry (2023–2025).
- **Curlew** – second region dub1 and disaster recovery (2025–2026).
- **Wren** – mobile app redesign (2024–2025).
- **Starling** – self-serve signup (2025–2026).
- **Magpie** – intranet search (2025–2026).
- **Plover** – FinOps, cloud cost allocation and savings (2025–2026).

**Acronyms**
SSO (single sign-on), MFA (multi-factor authentication), PTO (paid time off), OKR (objectives and key results), SLO (service level objective), RTO/RPO (recovery time / point objective), P1–P4 (incident severity), IC (incident commander), CHG (change ticket), KYC (know your customer), PCI DSS (card data security standard), SOC 2 (security audit report), JWKS (published token signing keys), CDC (change data capture), BFF (backend for frontend), ARR (annual recurring revenue).
""")

add("onb-security-training", "Security awareness for new joiners", "Samir Qureshi",
    "Security/Onboarding", "onboarding", "2024-07-01", r"""
# Security awareness – the short version

The full training is in PeopleHub (due within 14 days of joining). These are the points we most want you to remember.

1. **Phishing is the most likely way we get breached.** Check the sender, hover over links, and use the "Report phishing" button when in doubt. Our phishing simulations run quarterly; reporting a simulation counts as a success, even if you clicked first.
2. **Your security key is your login.** Keep it on your keyring, not in the laptop. Lost it? Tell #it-help right away and you will get a replacement the same day.
3. **Customer data stays in our systems.** No customer data in personal email, spreadsheets on your desktop, or AI tools that are not on the approved list. Restricted data (card numbers, bank details) never leaves the systems built for it.
4. **Secrets belong in Strongbox or 1Password.** Never in Git, chat or tickets. Secret scanning will find them, and then we all have to rotate.
5. **Lock your screen** (Ctrl+Cmd+Q on Mac) whenever you step away.
6. **Lost laptop or phone?** Report to security@fernwick.example within an hour so we can wipe it.
7. **Report, don't hide.** If you think you made a mistake, tell us. Fast reporting is what makes incidents small.

Security office hours: Thursdays 14:00 UK in #security-help.
""")

add("onb-lisbon-office", "Lisbon office guide", "Joana Figueiredo",
    "People/Onboarding/Offices", "onboarding", "2025-06-16", r"""
# Lisbon office guide

Address (from 14 April 2025): Avenida da Liberdade 190, 5th floor, 1250-147 Lisboa. The old Alcântara office is closed.

**Getting in**: badges are issued by the office manager, Joana Figueiredo, on your first day. Reception opens at 08:00; the office is accessible with your badge 07:00–22:00.

**Desks**: 64 desks, bookable in Deskly. Engineering anchor days are Tuesday and Wednesday (from July 2025), so book early for those days.

**Getting here**: Metro Avenida (blue line) is 2 minutes away. Bike parking in the garage, level -1. There is no car parking; we reimburse a monthly Navegante pass (€40) through Expensa.

**Food**: lunch vouchers (subsídio de alimentação) are paid on your salary card. Fruit and coffee in the kitchen; the Wednesday team lunch is catered.

**Holidays**: Portugal national holidays plus Santo António (13 June, Lisbon municipal holiday).

**IT**: printer and Wi-Fi as in Bristol. IT support on site Tuesdays; otherwise #it-help.

**Emergencies**: fire assembly point is the central reservation opposite number 185. First aiders: Joana Figueiredo, Jorge Alves, Rita Matos.
""")

add("onb-toronto-office", "Toronto office guide", "Daniel Okonkwo",
    "People/Onboarding/Offices", "onboarding", "2025-06-16", r"""
# Toronto office guide

Address: 320 Richmond Street West, Suite 600, Toronto, ON. Shared building with a coworking operator; we have our own floor area with 30 desks and 3 meeting rooms.

**Getting in**: building fob from the office manager (Daniel Okonkwo). After 19:00 and on weekends, sign in with building security.

**Who is here**: Sales North America, Customer Success, part of Support (North American hours), and 6 engineers in Payments and Data.

**Time zones**: most of the company is on UK time. Core hours for Toronto staff are 10:00–15:00 Eastern; all-hands at 16:00 UK is 11:00 Toronto.

**Benefits**: health and dental through the Canadian group plan (enrol within 30 days of start date in PeopleHub). PTO is 20 days rising to 25 after 3 years, plus Ontario statutory holidays.

**Commuting**: we reimburse a TTC monthly pass (CA$156) or bike share membership.

**IT**: no on-site IT; laptops are shipped. Use #it-help – the helpdesk covers Toronto until 17:00 Eastern.

**Office days**: Sales and CS anchor days are Tuesday (and Thursday from July 2025).
""")

add("onb-dev-environment", "Local development environment setup", "Callum Reid",
    "Engineering/Onboarding", "onboarding", "2025-02-24", r"""
# Local development environment setup

Works on macOS (Apple silicon) and Ubuntu 24.04. Budget about 2 hours, most of it downloads.

```
# 1. Tools
brew install git go node@20 ruby@3.3 postgresql@15 redis jq fernwick/tap/shipyard fernwick/tap/devbox
# 2. Auth
shipyard login             # opens SSO
gh auth login              # GitHub via SSO
# 3. Code
mkdir -p ~/src && cd ~/src
git clone git@github.com:fernwick/ledger.git
git clone git@github.com:fernwick/dev-stack.git
# 4. Dependencies (Postgres, Redis, Kafka, fake processors) in containers
cd dev-stack && devbox up
# 5. Seed data and run Ledger
cd ../ledger && make setup && make seed && make run
```

Ledger runs on http://localhost:3000; log in as `owner@demo.test` / `fernwick-dev`. The fake card processor accepts card 4242 4242 4242 4242 and declines 4000 0000 0000 0002.

**Secrets**: `make setup` pulls development secrets from Strongbox (`secret/dev/*`) using your SSO session. You do not need production secrets locally, ever.

**Common problems**
- `devbox up` fails with port 5432 in use: stop your local Postgres (`brew services stop postgresql@15`).
- Kafka container exits: give the container runtime at least 8 GB RAM.
- `make seed` hangs: run `devbox reset` and try again.

For Tollgate, Gatehouse and the mobile app, see the README in each repo. Questions: #ask-platform.
""")

# ---------------------------------------------------------------------------
# Product specs
# ---------------------------------------------------------------------------

STARLING_FINAL = r"""
# Starling: Self-serve signup

Status: **Final** (approved 29 September 2025) · PM: Noor Haddad · Design: Yuki Sato · Tech lead: Grace Nakamura · Epic: GRO-300

## Problem
New customers cannot start using Fernwick without a sales or support conversation. A support agent creates each tenant manually, with KYC checks by email, which takes 1–2 working days. 38% of trial requests from the pricing page never reach a working account. Competitors let a sole trader send an invoice within 10 minutes.

## Goal
A small business can sign up, send its first invoice within 15 minutes, and (optionally) activate Fernwick Pay the same day.

**Success metrics**
- 60% of started signups reach `active` within 24 hours (baseline: not measurable, manual process).
- Median time from start to first invoice sent under 15 minutes.
- Support tickets per new tenant in the first 30 days: at most 0.4 (today 1.1).

## Users
Sole traders and small businesses in the UK (phase 1), Portugal and Canada (phase 2). Accountants signing up on behalf of clients are out of scope (partner program).

## Flow
1. **Start:** email + password, or Google / Microsoft sign-in (Gatehouse).
2. **Verify email:** 6-digit code, valid 15 minutes.
3. **Business details:** "Are you VAT registered?" → VAT number lookup if yes; business name, address (postcode lookup), industry.
4. **Plan:** the plan picker (separate spec) – defaults to a 30-day Growth trial, no card required.
5. **First invoice:** guided flow with a sample customer that can be edited, pre-filled logo placeholder.
6. **Get paid online (optional):** Fernwick Pay activation with KYC (identity document + selfie via our vendor, bank account verification). Invoicing works without it.

## Requirements
- R1: Signup must work on mobile web; 45% of pricing page traffic is mobile.
- R2: Terms acceptance logged with version and timestamp.
- R3: KYC only for Fernwick Pay activation; invoicing-only tenants are active after email verification.
- R4: Abandoned signups receive at most 3 reminder emails over 7 days, then data is deleted after 30 days.
- R5: Rate limit 5 signups per IP per hour; disposable email domains blocked.
- R6: All signup steps emit funnel events to Quarry (`growth.events`).
- R7: Tenants created by Starling are identical to sales-created tenants (no "self-serve" second class).

## Out of scope
Data import from other tools (later), multiple users at signup, partner/accountant signup, Canada-specific tax settings (phase 2).

## Launch plan
Beta to 10% of UK pricing page visitors from 20 October 2025, 25% in November, GA in January 2026 after the December freeze.
"""

add("spec-starling-signup-final", "Starling: Self-serve signup (Final)", "Noor Haddad",
    "Product/Specs/Starling", "product_spec", "2025-09-29", STARLING_FINAL)

add("spec-starling-signup-draft", "Starling: Self-serve signup (Draft)", "Noor Haddad",
    "Product/Specs/Starling/Drafts", "product_spec", "2025-08-18", rep(
        STARLING_FINAL,
        ("Status: **Final** (approved 29 September 2025)", "Status: **Draft v0.3** – comments welcome until 5 September"),
        ("- 60% of started signups reach `active` within 24 hours (baseline: not measurable, manual process).",
         "- 50% of started signups reach `active` within 24 hours (baseline: not measurable, manual process). [Grace: is 50% ambitious enough? Growth says 60.]"),
        ("3. **Business details:** \"Are you VAT registered?\" → VAT number lookup if yes; business name, address (postcode lookup), industry.",
         "3. **Business details:** VAT number (lookup), business name, address (postcode lookup), industry."),
        ("4. **Plan:** the plan picker (separate spec) – defaults to a 30-day Growth trial, no card required.",
         "4. **Plan:** choose plan and enter card for trial (TBD – Marcus prefers no card)."),
        ("- R5: Rate limit 5 signups per IP per hour; disposable email domains blocked.\n", "- R5: Fraud controls – TBD with Security.\n"),
        ("- R7: Tenants created by Starling are identical to sales-created tenants (no \"self-serve\" second class).\n", ""),
        ("Beta to 10% of UK pricing page visitors from 20 October 2025, 25% in November, GA in January 2026 after the December freeze.",
         "Beta in October 2025 (date TBD), GA before end of year if possible."),
    ))

add("spec-starling-plan-picker", "Starling: plan picker and trial", "Noor Haddad",
    "Product/Specs/Starling", "product_spec", "2025-11-24", r"""
# Starling: plan picker and trial

Status: Approved · PM: Noor Haddad · Depends on: pricing decision of 12 November 2025

## Plans shown at signup
| Plan | Price (UK, monthly, ex VAT) | Invoices/month | Users | Fernwick Pay fee |
|---|---|---|---|---|
| Solo (new) | £9 | 20 | 1 | 1.6% + 20p |
| Growth | £24 | unlimited | 3 | 1.4% + 20p |
| Business | £49 | unlimited | 10, SSO | 1.2% + 20p |

Annual billing: 2 months free.

## Behaviour
- Everyone starts on a 30-day Growth trial without a card. On day 25 we ask them to pick a plan; if they don't, they drop to a read-only state on day 31 (they can still receive payments on invoices already sent).
- Solo is only shown to signups who said they are not VAT registered or have a turnover under £90k.
- Business shows "SSO with your identity provider" (Project Heron) and the audit log as key features.
- Downgrades take effect at the end of the billing period; upgrades immediately with proration.

## Metrics
Trial-to-paid conversion (target 22%), plan mix, downgrade rate within 90 days.

## Open risk
Solo may cannibalise Growth. We will review plan mix monthly; Rafael Mendes has the pricing model in Finance/Pricing.
""")

add("spec-wren-offline", "Wren: Offline mode for invoices", "Noor Haddad",
    "Product/Specs/Wren", "product_spec", "2024-10-14", r"""
# Wren: Offline mode for invoices

Status: Approved · PM: Noor Haddad · Mobile lead: Beatriz Cordeiro · Design: Yuki Sato

## Problem
11% of mobile invoice creations are abandoned after a network error. Tradespeople on building sites, farms and basements lose their work. In the Wren design review (2 Oct 2024) both customer interviewees mentioned it.

## User stories
- As a plumber on a job without signal, I can create and edit an invoice draft and it is saved on my phone.
- When my phone reconnects, the draft syncs automatically and I can send it.
- If I edited the same draft on the web, I can choose which version to keep.

## Requirements
- Drafts, customers and items can be created offline. Sending, payment links and Fernwick Pay require a connection.
- A clear "Offline – saved on this phone" indicator on every draft created offline.
- Sync within 30 seconds of reconnecting, in the background.
- Conflicts shown as a simple choice, never silently overwritten.
- Up to 200 offline drafts and 50 MB of photos per device.
- Offline data encrypted and wiped on logout.

## Metrics
Abandonment after network error below 2%. Sync conflict rate below 0.5% of synced drafts.

## Release
Part of the Wren v1 release (beta January 2025, GA June 2025). Technical design: "Project Wren: offline invoice drafts on mobile".
""")

add("spec-wren-scan-quote", "Wren: scan a paper quote into an invoice", "Beatriz Cordeiro",
    "Product/Specs/Wren", "product_spec", "2025-03-31", r"""
# Wren: scan a paper quote into an invoice

Status: Beta · Owner: Beatriz Cordeiro · Design: Yuki Sato

Many tradespeople write quotes on paper pads. This feature turns a photo of a paper quote into a draft invoice.

**Flow:** New invoice → "Scan a quote" → take a photo → on-device text recognition extracts lines with quantities and prices → the user reviews each line (low-confidence values highlighted yellow) → draft created.

**Requirements**
- Recognition runs on the device (iOS Vision / Android ML Kit). The photo is not uploaded unless the user attaches it to the invoice.
- Works offline (drafts follow the Wren offline mode).
- Supports £, € and CA$ amounts, quantities like "2 x" and "x2", and VAT lines.
- Review screen is mandatory; we never create a draft without the user confirming lines.

**Metrics**
Adoption: 8% of mobile invoices created via scan within 3 months of GA. Accuracy: 85% of lines accepted without edits in beta.

**Beta results (March 2025):** 1,900 scans by 640 users; 79% of lines accepted without edits; handwriting with prices in a separate column performs worst. GA planned with Wren v1 in June.
""")

add("spec-ledger-recurring", "Ledger: recurring invoices v2", "Eitan Shapiro",
    "Product/Specs/Ledger", "product_spec", "2025-12-10", r"""
# Ledger: recurring invoices v2

Status: Shipped (July 2024) · PM: Eitan Shapiro

## Why
Recurring invoices are used by 14,000 customers (gyms, cleaners, IT support). The current version only supports monthly schedules and cannot charge a saved card automatically.

## What's new
- Schedules: weekly, every 2 weeks, monthly (any day 1–28 or "last day"), quarterly, yearly.
- **Auto-charge:** if the client saved a card or Direct Debit mandate via Fernwick Pay, the invoice is charged on the issue date. The client receives the invoice marked "Paid".
- **Retries:** failed auto-charges are retried after 2, 6 and 24 hours, then the invoice is sent as a normal unpaid invoice with a payment link. Retries use the same Idempotency-Key so a retry cannot charge twice. _(Note, Dec 2025: this schedule must stay within Tollgate's idempotency window – see INC-2025-118.)_
- **Pause and skip:** pause a schedule or skip the next occurrence without cancelling.
- **Price changes:** change the price from a given date with an automatic notice to the client 14 days ahead.

## Non-goals
Usage-based billing, proration between plans (customers are small businesses, not SaaS).

## Metrics
Share of recurring invoices paid on the issue date: from 41% to 70%. Churn of recurring-invoice customers: −10%.
""")

add("spec-pay-instant-payouts", "Fernwick Pay: instant payouts", "Eitan Shapiro",
    "Product/Specs/Pay", "product_spec", "2024-09-30", r"""
# Fernwick Pay: instant payouts

Status: Approved for 2025 H2 · PM: Eitan Shapiro

## Problem
Merchants receive card payments in their bank account on a T+2 schedule. Small businesses with tight cash flow ask for faster access: "instant payouts" is the top feature request from Pay customers in 2024 (412 votes).

## Proposal
A merchant can request an instant payout of their available balance to an eligible UK debit card or bank account via Faster Payments, arriving within 30 minutes, 24/7.
- Fee: 1% of the payout amount, minimum 50p.
- Limits: up to £5,000 per payout, £10,000 per day, for merchants active at least 90 days with a chargeback rate under 0.5%.
- Available in the web app and the mobile app (Wren) on the Payouts screen.

## Requirements
- Risk check before every instant payout (balance, reserves, recent disputes).
- Idempotent payout requests (client-supplied key, same 24-hour guarantee as payments).
- Ledger records the fee as a separate line in the payout statement.
- Quarry `fin_payouts` mart includes instant payouts and fees for Finance.

## Out of scope
Canada and Portugal (phase 2), payouts in other currencies.

## Metrics
15% of eligible merchants use instant payouts at least once in 90 days. Fee revenue target £420k ARR by end of 2025.
""")

add("spec-pay-3ds2", "Fernwick Pay: 3-D Secure 2 and SCA exemptions", "Eitan Shapiro",
    "Product/Specs/Pay", "product_spec", "2024-01-22", r"""
# Fernwick Pay: 3-D Secure 2 and SCA exemptions

Status: Shipped (November 2023) · PM: Eitan Shapiro · Engineering: Payments team

## Context
Strong Customer Authentication (SCA) rules in the UK and EU require two-factor authentication for many online card payments. Our checkout uses 3-D Secure 1 fallbacks for some cards, which causes 9% checkout abandonment at the challenge step.

## Requirements
- 3DS2 for all card payments on hosted checkout and invoice payment pages, via both processors (Meridian and ClearArc).
- Request exemptions where allowed: low value (under €30 / £25), merchant-initiated transactions for recurring invoices after the first payment, and transaction risk analysis exemptions when our risk score is low and the processor supports it.
- Frictionless flow where the issuer allows; challenge shown in an embedded frame, never a full redirect, on mobile web.
- Record the authentication result and exemption used on each payment (for chargeback disputes and for Quarry reporting).

## Metrics
Challenge rate below 25% of card payments; checkout conversion +3 percentage points.

## Results (January 2024)
Challenge rate 21%; conversion +2.6 pp; fraud chargeback rate unchanged at 0.03%.
""")

add("spec-ledger-multicurrency", "Ledger: multi-currency invoicing", "Eitan Shapiro",
    "Product/Specs/Ledger", "product_spec", "2024-05-20", r"""
# Ledger: multi-currency invoicing

Status: Shipped (May 2024) · PM: Eitan Shapiro

Customers can issue invoices in a currency other than their home currency: GBP, EUR, CAD, USD, AUD, CHF, SEK, NOK, DKK, PLN.

**Requirements**
- Currency per invoice; default per client.
- Exchange rate captured at issue date from our rates provider and shown on the invoice as "for information". Customers can override the rate.
- Reports in the home currency using the rate at the payment date; realised FX gain/loss line in bookkeeping exports.
- Fernwick Pay accepts cards in the invoice currency where the processor supports it (GBP, EUR, CAD, USD at launch); other currencies show bank transfer details only.

**Data:** invoice events carry `currency_code` (ISO 4217) and `fx_rate`. _(The field was renamed from `currency` during this work – the rename that caused INC-2024-008 in Quarry.)_

**Metrics:** 6% of Growth and Business customers issue at least one non-home-currency invoice within 6 months.
""")

add("spec-magpie-search-ui", "Magpie: search results page", "Noor Haddad",
    "Product/Specs/Internal Tools", "product_spec", "2025-11-10", r"""
# Magpie: search results page

Status: In progress · PM: Noor Haddad · Design: Yuki Sato · Related design: "Project Magpie: intranet search"

## Goals
Help people decide in a few seconds which result is the one they want, especially when several pages look alike (copies, drafts, old versions).

## Result card
- Title, space path (e.g. "SRE/Runbooks"), document type badge (runbook, policy, postmortem…), author, last modified date.
- Two-line snippet with matched terms highlighted; for runbooks, the first command block if it matches.
- **Version hints:** if a newer version of a page exists (same title with a later year, or "Draft" vs "Final"), show "Newer version available" with a link. Copies show "Copy of IT/Runbooks/VPN Setup Guide".

## Filters
Type, space, date range, author. Quick filters for "Incidents" (postmortems + incident tickets) and "How-to" (runbooks + FAQs).

## Zero results
Suggest spelling corrections and code-name expansions ("Heron → Gatehouse v2").

## Feedback
Thumbs up/down per result, feeding the labelled evaluation set after review.

## Metrics
Top-3 click-through rate above 55%; searches followed by reformulation below 25%.
""")

add("spec-ledger-reminders", "Ledger: smart late payment reminders", "Eitan Shapiro",
    "Product/Specs/Ledger", "product_spec", "2025-10-27", r"""
# Ledger: smart late payment reminders

Status: Approved · PM: Eitan Shapiro · Design: Yuki Sato

## Problem
Reminders today are a fixed schedule (3 days before due, on due date, 7 days after). Customers say the tone is wrong for long-standing clients and too soft for chronic late payers. Late invoices are the #1 reason customers churn in exit surveys.

## Proposal
- **Reminder profiles:** Gentle, Standard, Firm. Each defines the schedule and message templates. Default: Standard.
- **Per-client override:** set a profile for specific clients.
- **Smart timing:** send reminders at the hour the client usually opens emails (based on the last 10 invoice opens); fallback 09:00 client local time.
- **Statutory late payment interest (UK):** optional line on Firm reminders citing the Late Payment of Commercial Debts Act, with calculated interest and fixed compensation.
- **Payment link** in every reminder; if Fernwick Pay is active, a "Pay now" button.

## Non-goals
Debt collection handoff (partner integration is a separate opportunity), SMS reminders.

## Metrics
Days sales outstanding for customers using reminders: −4 days. Unsubscribe rate on reminder emails below 0.5%.

## Dependencies
Email deliverability (Messaging team). Note from October 2025: reminders were among the emails affected by the SPF incident INC-2025-093.
""")

add("spec-pay-refunds-api-v2", "Fernwick Pay: Refunds API v2", "Eitan Shapiro",
    "Product/Specs/Pay", "product_spec", "2025-05-26", r"""
# Fernwick Pay: Refunds API v2

Status: Approved · PM: Eitan Shapiro · Tech lead: Grace Nakamura (Kestrel phase 2)

## Changes from v1
- `POST /v3/refunds` supports partial refunds (multiple per payment, total not above the captured amount).
- Requires an `Idempotency-Key` header (v1 did not).
- Asynchronous outcome: the response is `pending`; final status arrives via webhook `refund.succeeded` or `refund.failed`. Most refunds complete within 10 seconds.
- Refund reasons: `duplicate`, `requested_by_customer`, `fraudulent`, `other` with free text.
- Refunds of payments older than 180 days go through bank transfer instead of the card (processor limits).

## Migration
v1 endpoint remains until 30 June 2026. Partners using v1 receive emails in July 2025 and January 2026. Internal callers (Ledger credit notes, Support admin panel) move in Kestrel phase 2.

## Metrics
Refund support tickets −30%. Time-to-refund p95 under 1 minute.
""")

add("spec-ledger-audit-log", "Ledger: audit log for Business plan", "Noor Haddad",
    "Product/Specs/Ledger", "product_spec", "2024-10-14", r"""
# Ledger: audit log

Status: Shipped (October 2024) · PM: Noor Haddad

Business plan customers and their accountants want to know who changed what: who edited an invoice after it was sent, who changed bank details, who added a user.

**Scope**
- Events: login (method, IP, device), user invited/removed/role changed, invoice created/edited/sent/voided, bank details changed, payout settings changed, SSO settings changed, API key created/revoked.
- Retention 2 years; export to CSV; filter by user, event type, date.
- Read-only; not even Fernwick staff can edit entries. Support impersonation sessions are logged as "Fernwick Support on behalf of…".

**Security**
Bank detail changes also trigger an email to all admins (fraud protection). Login events include SSO logins once customer SSO (Project Heron phase 3) launches.

**Metrics:** Used by 30% of Business plan accounts monthly; cited in win/loss for accounting-firm deals.
""")

add("spec-customer-sso", "Business plan: SSO with your identity provider", "Noor Haddad",
    "Product/Specs/Identity", "product_spec", "2025-01-20", r"""
# Business plan: SSO with your identity provider

Status: Approved · PM: Noor Haddad · Engineering: Identity team (Project Heron phase 3) · GA target: May 2025

## Who it's for
Business plan customers, especially accounting firms and multi-site businesses with 10+ users, who manage staff accounts in Microsoft Entra ID, Google Workspace or Okta.

## Requirements
- Admins configure SAML 2.0 or OIDC in Settings > Security, with a guided setup per provider and a "Test connection" button.
- Verified email domains: an admin proves ownership with a DNS TXT record; users on that domain are sent to the company IdP.
- "Require SSO" switch: password login disabled for domain users; the account owner keeps a break-glass password + MFA login.
- Just-in-time user creation on first SSO login with a default role chosen by the admin.
- Audit log entries for SSO configuration changes and SSO logins.
- Customer-facing SAML signing certificate rotated yearly with 30 days' notice (email to admins).

## Out of scope
SCIM provisioning and group-to-role mapping (2026).

## Launch
Private beta with 12 customers in April 2025, GA in May. Pricing: included in Business plan.
""")

# ---------------------------------------------------------------------------
# Tickets
# ---------------------------------------------------------------------------

add("tkt-infra-2231", "INFRA-2231: dns-lint – reject literal hostnames and unresolvable targets", "Oluwaseun Adeyemi",
    "Engineering/Tickets/INFRA", "ticket", "2024-12-10", r"""
**Type:** Task · **Priority:** High · **Status:** Done · **Assignee:** Oluwaseun Adeyemi · **Parent:** INC-2024-112

Follow-up from the DNS outage on 12 Nov. Add a CI check to `infra-live` for everything under `dns/`:
1. Fail if a CNAME/alias target is a string literal ending in `.elb.lon1.fernwick.internal` or similar LB domains; require a resource or data source reference.
2. Resolve every target in the plan output; fail on NXDOMAIN.
3. Warn if TTL > 300 on records in `critical.yaml`.

Comment (Callum Reid, 3 Dec): please also print the old and new resolved IPs in the PR comment – reviewers need to see what actually changes.
Comment (Oluwaseun, 10 Dec): merged in PR #2241, enabled as required check. Tested against a replay of PR #2187 – it fails as expected.
""")

add("tkt-it-4412", "IT-4412: VPN disconnects every few minutes on hotel Wi-Fi", "Aoife Brennan",
    "IT/Helpdesk Tickets", "ticket", "2024-10-03", r"""
Reporter: Liesbeth de Graaf · Category: VPN · Status: Resolved

"Fernwick Connect drops every 5–10 minutes at the conference hotel in Amsterdam, so I can't stay on the CRM admin pages."

Resolution (Aoife): hotel network blocks UDP after a few minutes. Switched transport to TCP/443 in Settings > Advanced; stable since. Added a line to the VPN Setup Guide troubleshooting section.
""")

add("tkt-it-4415", "IT-4415: Second monitor for Lisbon hot desk", "Aoife Brennan",
    "IT/Helpdesk Tickets", "ticket", "2024-10-07", r"""
Reporter: Jorge Alves · Category: Hardware · Status: Won't do

Request for a dedicated second monitor at desk L-23 in Lisbon. Declined: Lisbon desks are bookable hot desks and all have one 27" monitor plus a dock. Jorge can claim a monitor for home under the Home Office Equipment Policy.
""")

add("tkt-it-5120", "IT-5120: Procure security keys for all staff", "Deepa Venkatesan",
    "IT/Helpdesk Tickets", "ticket", "2025-06-30", r"""
**Type:** Procurement · **Status:** Done (June 2025) · **Owner:** Deepa Venkatesan

Security Council decision (18 March 2025): phishing-resistant MFA for all staff by end of 2025. Currently only admins and engineers with production access (about 95 people) have keys.

- Order 150 FIDO2 keys (USB-C + NFC) plus 40 spares. Budget approved by Rafael Mendes: £8,600.
- Ship to Bristol; Lisbon and Toronto allocations sent on to offices (60 / 25).
- Enrolment drive in July with helpdesk drop-in sessions.

Update 30 June: keys delivered and 61% of staff enrolled. Remaining people get a reminder through PeopleHub; SMS fallback was already removed in 2024.
""")

add("tkt-gate-1219", "GATE-1219: API gateway must use fwauth 2.4 for token verification", "Jonas Lindqvist",
    "Engineering/Tickets/GATE", "ticket", "2025-05-09", r"""
**Type:** Bug · **Priority:** P1 follow-up · **Status:** Done · **Parent:** INC-2025-041

The API gateway plugin has its own JWT verification code with a 60-minute JWKS cache and no refetch on unknown kid. This caused the 17 April login outage.

Acceptance criteria:
- Replace the custom verifier with `fwauth` 2.4 (Lua binding via the Go sidecar).
- JWKS cache max 10 minutes; refetch once on unknown kid, at most once every 30 s.
- Export `fwauth_jwks_kids{kid=...}` so the key rotator can confirm the gateway has seen new keys.
- Load test: no more than 2% p99 latency increase.

Done 9 May: deployed via Shipyard canary. p99 +0.6 ms. Rotator dry-run shows the gateway fleet reporting kids.
""")

add("tkt-pay-870", "PAY-870: migration tool must fail on invalid indexes", "Dmitri Sokolov",
    "Engineering/Tickets/PAY", "ticket", "2025-08-15", r"""
**Type:** Bug · **Priority:** High · **Status:** Done · **Parent:** INC-2025-077

When `CREATE INDEX CONCURRENTLY` fails (e.g. `lock_timeout`), PostgreSQL leaves an INVALID index behind and our migration runner logs a warning but exits 0. On 6 Aug this left `idx_idem_merchant_key` invalid and caused the Tollgate latency P1.

Fix:
- After every concurrent index build, query `SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid;` and fail the migration if any index is invalid.
- On failure, drop the invalid index automatically and exit non-zero so Shipyard halts the release.
- Daily Lantern check for invalid indexes on all production clusters (alert, not page).

Shipped 15 Aug in `fw-migrate` 1.9. All services updated by 22 Aug.
""")

add("tkt-pay-911", "PAY-911: daily duplicate charge detection", "Eitan Shapiro",
    "Engineering/Tickets/PAY", "ticket", "2025-12-12", r"""
**Type:** Story · **Status:** Done · **Parent:** INC-2025-118

Duplicate charges were only detected at monthly reconciliation. Add a daily job in Quarry:
- Flag pairs of captured payments with the same merchant, same payer token, same amount, and same Ledger invoice id within 72 hours.
- Post count to #payments-oncall daily; alert (P2 page) if more than 10 new pairs in a day.
- CS gets a daily CSV of flagged pairs for proactive refunds.

First week results: 3 genuine duplicates (customer paid the same invoice twice by card and bank transfer – not a bug), 0 system duplicates.
""")

add("tkt-data-1502", "DATA-1502: Sluice batch rejected – ledger_events schema mismatch", "Sluice Bot",
    "Data/Tickets", "ticket", "2024-02-12", r"""
Auto-created by Sluice.

Pipeline: `ledger_events` · Batch: 2024-02-09T17:55Z · Records: 48,212 · Rejected: 48,212
Error: `SchemaValidationError: required field 'currency' missing; unexpected field 'currency_code'`

(Comment added Mon 12 Feb by Maribel Ocampo: this ticket was created on Friday evening and not seen until Monday – see INC-2024-008.)
""")

add("tkt-sec-1184", "SEC-1184: Q3 2024 access review – Quarry", "Samir Qureshi",
    "Security/Tickets", "ticket", "2024-07-19", r"""
**Type:** Access review · **System owner:** Maribel Ocampo · **Due:** 12 July 2024 · **Status:** Closed

Export attached: 142 accounts (analyst 118, finance_reader 14, pii_reader 6, admin 4).

Decisions:
- Remove 9 accounts with no login in 60+ days (auto-disabled already, now deleted).
- Remove `pii_reader` from 2 analysts who moved to Product analytics (they no longer need raw zones).
- Keep 4 admins: Maribel Ocampo, Jorge Alves, Kwame Mensah (break-glass), `svc-sluice` (service account, key-pair auth).

Removals completed 16 July by Jorge Alves. Security sample check: 14 of 131 "keep" decisions checked against HR roster, all valid.
""")

add("tkt-infra-2262", "INFRA-2262: page at 90% Kafka broker disk", "Oluwaseun Adeyemi",
    "Engineering/Tickets/INFRA", "ticket", "2025-01-24", r"""
Follow-up from INC-2025-006. Today we only page on `OfflinePartitions`, which is already an outage. Add `KafkaBrokerDiskUsageCritical` at 90% (page) and keep 80% as a warning in #sre-alerts. Done: rule added in Lantern, tested by filling a staging broker.
""")

add("tkt-it-4980", "IT-4980: Can't log in to Lantern – keeps redirecting", "Aoife Brennan",
    "IT/Helpdesk Tickets", "ticket", "2025-04-17", r"""
Reporter: Mei Lin Chua · Category: SSO · Status: Closed (duplicate of incident)

Logging in to Lantern bounces straight back to the login page, over and over. Cleared cookies, tried another browser.

Aoife (09:44): same as the customer login loop being handled in INC-2025-041. Linked and closed; follow #inc-2025-041 for updates.
""")

SUP_DUP = add(
    "tkt-sup-3391", "SUP-3391: Client charged twice for recurring invoice", "Tariq Bello",
    "Support/Tickets", "ticket", "2025-12-02", r"""
Customer: Brightwell Cleaning Ltd (tenant 88213) · Priority: Normal · Status: Escalated

The customer says their client was charged twice for recurring invoice INV-2025-1107 (£180): once at 09:00 on 27 Nov, and again at 11:02. Only one invoice exists in Ledger. Screenshots of the client's bank statement attached (cropped).

Agent note: refunded the second charge manually. Looks like a one-off – escalating to Payments for a look.

Update 2 Dec (Eitan Shapiro): part of INC-2025-118 (idempotency TTL). Linked.
""")

add("tkt-sup-3402", "SUP-3402: Duplicate card payment on recurring invoice", "Tariq Bello",
    "Support/Tickets", "ticket", "2025-12-02", rep(
        SUP_DUP,
        ("Customer: Brightwell Cleaning Ltd (tenant 88213)", "Customer: Harbour Street Gym (tenant 120455)"),
        ("The customer says their client was charged twice for recurring invoice INV-2025-1107 (£180): once at 09:00 on 27 Nov, and again at 11:02.",
         "Gym member charged twice for monthly membership invoice INV-2025-4410 (£45): at 09:00 on 29 Nov and again at 11:01."),
        ("Agent note: refunded the second charge manually. Looks like a one-off – escalating to Payments for a look.",
         "Agent note: second similar report this week (see SUP-3391). Refunded. Escalating to Payments."),
    ))

add("tkt-plat-611", "PLAT-611: shipyard config history and config rollback commands", "Callum Reid",
    "Engineering/Tickets/PLAT", "ticket", "2024-08-02", r"""
Follow-up from INC-2024-044. On-call could not see that the last change to ledger-pdf was config-only. Add `shipyard config history <service>` (list config bundle versions with PR links) and `shipyard config rollback <service> [--to <hash>]`. Shipped in Shipyard 2.14 on 2 Aug 2024.
""")

add("tkt-mob-388", "MOB-388: analytics SDK retries without backoff on HTTP 429", "Beatriz Cordeiro",
    "Engineering/Tickets/MOB", "ticket", "2025-01-16", r"""
**Type:** Bug · **Priority:** Blocker · **Status:** Done (0.9.4) · **Related:** INC-2025-006

In Wren beta 0.9.3 the analytics SDK retries immediately on 429 and re-sends the whole buffer (up to 2,000 events) each time. About 3,000 devices generated ~10x normal clickstream traffic and filled a Kafka broker.

Fix: shared backoff library (5 s initial, x2, cap 10 min, jitter), only resend unacknowledged events, drop buffer above 5,000 events. Remote kill switch `mobile.analytics_upload` kept. 0.9.4 released 16 Jan; staged rollout resumed 20 Jan.
""")

add("tkt-finops-22", "FINOPS-22: tag or delete legacy instances in shared-services", "Callum Reid",
    "Engineering/Tickets/FINOPS", "ticket", "2025-08-29", r"""
23 untagged EC2 instances in the `shared-services` account, about £7k/month. Owners found for 15 (tagged). 6 were old build agents – terminated. 2 belong to the Sales Ops reporting cron that still reads reportdb (DATA-1904); tagged and scheduled for shutdown with reportdb on 30 September. Closed 29 August; tagging now 89%.
""")

add("tkt-it-5301", "IT-5301: Quarry payments_reader role request", "Aoife Brennan",
    "IT/Helpdesk Tickets", "ticket", "2025-07-14", r"""
Reporter: Farid Haddadi · Status: Closed – wrong channel

Requesting `payments_reader` in Quarry for the refunds dashboard. Closed: since July 2025 Quarry roles are requested in the Access app, not the IT portal (see "Requesting access to Quarry (2025)"). Farid re-requested there; approved by Adaeze Okafor the same day.
""")

add("tkt-hr-2210", "HR-2210: PTO balance shows 0 carried over", "Sofia Brandt",
    "People/Tickets", "ticket", "2025-01-08", r"""
Several employees report that PeopleHub shows 0 carried-over days for 2025 although they had unused days in 2024. Cause: the carry-over job ran before the new PTO policy rules (max 5 days, expiry 31 March) were configured. Re-ran on 8 January; balances corrected. Portugal balances follow the Labour Code rule (until 30 April) and were checked separately.
""")

add("tkt-sre-744", "SRE-744: remove DNS switch step from regional failover runbook", "Tomasz Wierzbicki",
    "SRE/Tickets", "ticket", "2026-03-16", r"""
Created 8 Oct 2025 at the Curlew readiness review. The failover runbook still contains step "switch api CNAME to api-dub1" from the first draft, but the design uses global load balancer weights only.

Status history: To do (Oct 2025) → not picked up before the game day → caused the partial failure in INC-2026-022 (10 Mar 2026) → Done 16 Mar 2026 (runbook rewritten, duplicate SRE-780 closed).
""")

add("tkt-chg-3120", "CHG-3120: Ledger PostgreSQL minor version upgrade 15.8 → 15.10", "Dmitri Sokolov",
    "Engineering/Tickets/CHG", "ticket", "2024-12-10", r"""
**Change type:** Normal · **Window:** Tue 10 Dec 2024, 21:00–22:00 UTC · **Owner:** Dmitri Sokolov · **Approvers:** Callum Reid, Tomasz Wierzbicki

**Plan**
1. Upgrade replicas one at a time (`ledger-pg-3`, `ledger-pg-2`), verify replication.
2. Switchover to `ledger-pg-2` with Patroni (expected 5–15 s write pause).
3. Upgrade `ledger-pg-1`, keep it as replica.
4. Restart Sluice CDC (`sluice restart ledger_cdc`).

**Rollback:** minor versions are binary compatible; switch back to a not-yet-upgraded node.

**Result:** completed 21:38. Write pause 9 s during switchover; no errors reported. Before the December freeze as planned.
""")

add("tkt-msg-301", "MSG-301: move marketing email to mail.fernwick.example", "Callum Reid",
    "Engineering/Tickets/MSG", "ticket", "2025-11-07", r"""
Follow-up from INC-2025-093 (SPF limit exceeded). Marketing campaign tools send from `mail.fernwick.example` with their own SPF/DKIM; the root domain SPF now only includes our transactional provider and Google Workspace (5 lookups). Done 7 Nov; DMARC reports clean for a week.
""")

add("tkt-infra-2410", "INFRA-2410: add campaign tool to SPF record", "Liesbeth de Graaf",
    "Engineering/Tickets/INFRA", "ticket", "2025-10-24", r"""
Please add `include:_spf.campaignly.example` to the SPF TXT record for fernwick.example so our new campaign tool can send as news@fernwick.example. Launch of the autumn newsletter is 16 Oct.

(SRE: applied 15 Oct 09:20. Later identified as the trigger for INC-2025-093 – record exceeded 10 DNS lookups.)
""")

add("tkt-it-5402", "IT-5402: New starter laptop – Toronto", "Aoife Brennan",
    "IT/Helpdesk Tickets", "ticket", "2025-09-02", r"""
New starter: Hana Petrov (SRE), start date 15 Sep 2025, Toronto. MacBook Pro 14", security key, shipped 8 Sep via tracked courier to the Toronto office. Engineering groups added; prod access to follow after on-call training.
""")

add("tkt-gro-341", "GRO-341: make VAT number optional for sole traders", "Yuki Sato",
    "Product/Tickets/Growth", "ticket", "2025-11-11", r"""
Starling beta funnel shows 21% drop-off at business details, mostly sole traders without a VAT number. Ask "Are you VAT registered?" first and only show the VAT lookup if yes. Shipped 11 Nov; drop-off at that step down to 9% in the first week.
""")

add("tkt-sec-1302", "SEC-1302: phishing report – fake payroll update email", "Samir Qureshi",
    "Security/Tickets", "ticket", "2025-06-23", r"""
17 staff reported an email "Action required: update your payroll details" pointing to a lookalike PeopleHub login page. Blocked the domain at the mail gateway and web proxy, purged the message from all mailboxes. 2 people entered credentials; both use security keys, so no account access was gained. Passwords reset anyway. Not a simulation.
""")

add("tkt-mag-14", "MAG-14: index Tracker projects with permissions", "Lukas Brenner",
    "Engineering/Tickets/MAG", "ticket", "2025-10-27", r"""
Magpie connector for Tracker: index summary, description and comments for all projects except HR and SEC (restricted). Store project-level ACL groups and filter at query time. Initial backfill: 180k tickets in ~3 hours; incremental every 15 minutes.
""")

add("tkt-it-5555", "IT-5555: Printer on 2nd floor Bristol jamming", "Aoife Brennan",
    "IT/Helpdesk Tickets", "ticket", "2026-01-21", r"""
Bristol 2nd floor printer (BRS-PR-02) jams on double-sided printing. Engineer visit booked for 23 Jan; use the 3rd floor printer meanwhile.
""")

# ---------------------------------------------------------------------------
# FAQs
# ---------------------------------------------------------------------------

add("faq-pto", "PTO FAQ", "Sofia Brandt",
    "HR/FAQ", "faq", "2025-02-10", r"""
# PTO FAQ

**How many PTO days do I get?** UK 27, Portugal 25, Canada 20 (25 after 3 years), plus public holidays and the Fernwick Days closure between Christmas and New Year. See the PTO and Leave Policy.

**Where do I see my balance?** PeopleHub > Time Off. The balance shows accrued, taken, booked and carried-over days separately.

**Can I take half days?** Yes. Choose "Half day (AM)" or "Half day (PM)" in the request.

**How much can I carry over?** Up to 5 days into the next year, to be used by 31 March. In Portugal, by agreement until 30 April. If your carry-over looks wrong, see HR-2210 or ask in #ask-people.

**How is PTO pro-rated when I join mid-year?** Allowance × remaining calendar days ÷ 365, rounded up to the nearest half day.

**Do I need to find cover?** Tell your team and hand over. If you are on call during your PTO, swap the shift in Beacon before your manager approves the request.

**What if I'm sick during my holiday?** You can convert those days to sick leave with a doctor's note.

**Is there a minimum?** Yes: 15 days a year, including one block of 5 working days.

**Can I buy or sell PTO?** No.
""")

add("faq-it", "IT Helpdesk FAQ", "Aoife Brennan",
    "IT/FAQ", "faq", "2025-05-05", r"""
# IT Helpdesk FAQ

**How do I contact IT?** help.fernwick.internal (tickets) or #it-help. Urgent (lost device, locked out before a customer meeting): call the helpdesk line listed on the IT portal homepage.

**I lost my security key.** Report in #it-help. The helpdesk verifies you by video call and issues a temporary access pass valid for 8 hours. Replacement keys ship the same day.

**I'm locked out of SSO.** After 10 failed attempts accounts lock for 15 minutes. If it persists, the helpdesk can reset after identity verification. We will never ask for your password.

**The VPN says my device is not compliant.** Install pending OS updates and restart; compliance is rechecked within 15 minutes.

**Can I use my personal laptop?** Only for email and chat in the browser. Production systems, Quarry and customer data need a company-managed laptop (Acceptable Use Policy).

**How do I get access to a tool?** Use the Access app for Quarry, Shipyard and cloud roles; the IT portal for everything else. Your manager approves.

**When is my laptop refreshed?** Every 4 years, or earlier if it fails. Engineering laptops every 3 years.

**Which AI tools can I use?** See IT/Approved AI Tools. Customer data must never go into any AI tool.
""")

add("faq-expenses", "Expenses FAQ", "Ana Sousa",
    "Finance/FAQ", "faq", "2025-02-14", r"""
# Expenses FAQ

**How do I submit an expense?** In Expensa: New claim → take a photo of the receipt → choose category → submit. Claims go to your manager, then Finance if over £750 (travel) or over your manager's limit.

**When do I get paid?** Approved claims are paid with the next weekly payment run (Wednesday) in the UK and Portugal, and fortnightly in Canada.

**What's the deadline?** Travel: 45 days after returning (2025 policy; it was 30 days in 2024). Other expenses: 30 days. Anything older than 90 days is rejected.

**What's the hotel limit in London?** £175 per night including tax in 2025 (£160 in 2024).

**I lost a receipt.** Add a "missing receipt" declaration in Expensa. Allowed twice per year, for items under £75.

**Can I expense a monitor?** Yes, from your home office allowance (£400 one-off), category "Home office".

**Team dinner?** £40 per person per quarter for team socials; list attendees.

**Who do I ask?** #ask-finance.
""")

add("faq-vpn", "VPN FAQ", "Aoife Brennan",
    "IT/FAQ", "faq", "2025-07-21", r"""
# Fernwick Connect (VPN) FAQ

**Do I need the VPN in the office?** No. Office networks route to internal tools directly.

**Do I need it for Quarry?** Not since May 2025 – Quarry checks device compliance at SSO. For Lantern, Shipyard UI, Cruise Control and other internal tools, yes.

**Is all my traffic going through the VPN?** No, it is split tunnel: only internal addresses (10.0.0.0/8 and corp.fernwick.internal) go through it.

**It keeps disconnecting.** On hotel or conference Wi-Fi, switch transport to TCP/443 (Settings > Advanced). See IT-4412.

**The VPN worked yesterday and today every connection fails.** Check #it-help and the status page first. In September 2023 an expired gateway certificate blocked everyone (INC-2023-019); gateway certificates are monitored now.

**Can I use the VPN abroad?** Yes, as long as your stay is approved under the Remote and Hybrid Work Policy. Some countries restrict VPN use – ask IT before travelling.
""")

add("faq-quarry", "Quarry FAQ", "Kwame Mensah",
    "Data/FAQ", "faq", "2026-02-16", r"""
# Quarry FAQ

**What is Quarry?** Fernwick's data warehouse. Since the Osprey cutover (6 May 2025) it is the only source for reporting; reportdb was switched off on 30 September 2025.

**How do I get access?** Request a role in the Access app (analyst, finance_reader, payments_reader, pii_reader). See "Requesting access to Quarry (2025)".

**How fresh is the data?** Raw zones about 15–30 minutes behind production. Finance marts are complete for the previous day by 06:00 UK time. Check #data-status for delays.

**Why don't numbers match the Ledger UI?** Usually timezone (marts use UK time) or definitions (AR aging uses outstanding amount). Look at the model description in the dbt docs.

**Which warehouse should I use?** S for exploration, M for dashboards. L and above need a reason; BI is limited to M since INC-2026-014.

**Can I export data to a spreadsheet?** Confidential data only, delete within 30 days, never Restricted data.

**Where do I ask?** #ask-data.
""")

add("faq-oncall", "On-call FAQ", "Oluwaseun Adeyemi",
    "SRE/FAQ", "faq", "2026-02-23", r"""
# On-call FAQ

**How often will I be on call?** At most one week in four, primary or secondary.

**When does the rotation change?** Tuesdays at 10:00 UK time since January 2026 (previously Mondays).

**How much is the allowance?** £300 / €330 / CA$500 per week from 2026 (was £250 / €280 / CA$420). Incident work outside hours is paid at 1.5x or taken as time off in lieu.

**What if I can't respond for an hour?** Ask the secondary to cover, and tell them in #oncall-log. For longer, swap in Beacon.

**My phone didn't ring.** Beacon sends push, then SMS after 60 seconds, then a voice call after 3 minutes (since February 2026). Run `beacon test-page --me` at the start of every shift.

**Should I declare an incident at 3am if I'm not sure?** Yes. Declare and downgrade later.

**I'm going on PTO during my shift.** Swap in Beacon before the PTO is approved.
""")

add("faq-shipyard", "Shipyard FAQ", "Callum Reid",
    "Engineering/FAQ", "faq", "2025-11-17", r"""
# Shipyard FAQ

**My deploy is stuck at 10%.** Canary analysis is comparing canary and baseline pods over a 10-minute window. If traffic is low (evenings), it may extend the window. `shipyard status <service>` shows the current check.

**The canary was rolled back automatically. Why?** `shipyard status <service> --last` shows which metric failed (error rate, p99 latency or a business metric).

**How do I roll back?** `shipyard rollback <service> --to previous`. Since Shipyard 2.14 this restores config too; use `shipyard config history` to see config-only changes.

**Can I deploy on Friday afternoon?** Not after 12:00 UK time unless your team's window says otherwise.

**Can I deploy during the December freeze?** Only with `--freeze-exception CHG-xxxx` and VP Engineering approval.

**How do I deploy to dub1?** In-scope services deploy to both regions automatically since November 2025. `--region` is only for debugging.
""")

add("faq-security", "Security FAQ: phishing, devices and data", "Samir Qureshi",
    "Security/FAQ", "faq", "2024-11-11", r"""
# Security FAQ

**I clicked a link in a suspicious email. What now?** Report it with the "Report phishing" button and post in #security-help. If you entered your password, say so – we will reset it. With a security key, your account is still protected.

**Is this email a simulation?** Maybe. Report it either way; reporting is what we measure.

**A customer sent me their card number in a ticket.** Delete it and use the "PCI redaction" macro. Never copy it anywhere.

**Can I use a USB stick?** USB storage is blocked on company laptops. Use Google Drive sharing with the right permissions.

**Can I install browser extensions?** Only from the approved list.

**Someone from "IT" called me asking for my MFA code.** Hang up. IT will never ask for it. Report it in #security-help.

**Where are the security policies?** Security/Policies: Information Security Policy, Acceptable Use and Password Policy, Data Classification, Access Review, Vendor Security Review.
""")

add("faq-heron-sso", "Gatehouse v2 / SSO migration FAQ (Project Heron)", "Jonas Lindqvist",
    "Engineering/FAQ", "faq", "2025-03-17", r"""
# Project Heron FAQ

**What changed for customers?** Since 3 March 2025 all customer logins go through Gatehouse v2. The login page looks different; passwords and MFA settings were kept.

**What changed for staff?** Shipyard, Lantern and Quarry log in through Gatehouse v2 (since 28 January 2025), which federates to the corporate IdP.

**My service still validates HS256 tokens. Is that OK?** No – HS256 acceptance must be removed by 31 March 2025. Upgrade to `fwauth` 2.x and verify ES256 tokens against the JWKS.

**How do I get the JWKS?** `https://auth.fernwick.example/.well-known/jwks.json`. Do not hard-code keys. Cache for at most 10 minutes.

**When can customers use their own SSO?** Business plan SAML/OIDC SSO: beta April 2025, GA May 2025.

**Who do I ask?** #identity.
""")

add("faq-benefits-uk", "Benefits FAQ (UK)", "Sofia Brandt",
    "HR/FAQ", "faq", "2024-04-15", r"""
# Benefits FAQ (UK)

**Pension?** Fernwick contributes 6% of salary if you contribute at least 4% (salary sacrifice available).

**Health insurance?** Private medical insurance for you from day one; partners and children can be added at a discount.

**Life assurance?** 4x salary.

**Cycle to work?** Yes, up to £2,500 through salary sacrifice.

**Eye tests?** Reimbursed up to £30 every two years, plus up to £100 towards glasses for screen use.

**Learning budget?** £300 a year for books and courses, plus conferences with manager approval.

**Where do I enrol?** PeopleHub > Benefits, within 30 days of joining or at annual renewal in April.

Portugal and Canada benefits are listed in their own pages.
""")

# ---------------------------------------------------------------------------
# Announcements
# ---------------------------------------------------------------------------

add("ann-heron-customer-login", "Announcement: new login experience for customers", "Jonas Lindqvist",
    "Company/Announcements", "announcement", "2025-02-07", r"""
Hi everyone,

From Monday 10 February we start moving customer logins to Gatehouse v2 (Project Heron). A small percentage of customers at first, everyone by 3 March.

What customers will notice: a refreshed login page, "Sign in with Microsoft" next to Google, and faster logins. Passwords and MFA settings stay the same.

What you need to do: Support and CS – the help-centre article "New login page" is live; use macro "Login refresh". Engineers – if your service still verifies HS256 tokens, upgrade to fwauth 2.x before 31 March.

Questions in #identity. Thanks to the Identity team for a year of work!
– Jonas
""")

CLOSURE_2024 = add(
    "ann-office-closure-2024", "Fernwick Days: office closure December 2024", "Sofia Brandt",
    "Company/Announcements", "announcement", "2024-11-18", r"""
Hi all,

Our offices will close for **Fernwick Days from Tuesday 24 December 2024 to Wednesday 1 January 2025**, reopening on Thursday 2 January. Fernwick Days are on top of your PTO allowance.

- Bank and public holidays in this period follow your country.
- Teams with on-call rotations keep them running; people on call during the closure get a day in lieu for each day on call (record it in PeopleHub).
- Support runs a reduced rota (chat 09:00–17:00 UK on 27 and 30 December).
- The December change freeze runs from 16 December to 6 January.

Please set your out-of-office and enjoy the break.
– Sofia, People Ops
""")

add("ann-office-closure-2025", "Fernwick Days: office closure December 2025", "Sofia Brandt",
    "Company/Announcements", "announcement", "2025-11-17", rep(
        CLOSURE_2024,
        ("from Tuesday 24 December 2024 to Wednesday 1 January 2025**, reopening on Thursday 2 January.",
         "from Wednesday 24 December 2025 to Friday 2 January 2026**, reopening on Monday 5 January."),
        ("(chat 09:00–17:00 UK on 27 and 30 December)", "(chat 09:00–17:00 UK on 29 and 30 December and 2 January)"),
        ("runs from 16 December to 6 January.", "runs from 15 December to 5 January."),
        ("Please set your out-of-office and enjoy the break.",
         "New this year: the Lisbon office building is closed by the landlord from 22 December, so Lisbon colleagues work from home that week.\n\nPlease set your out-of-office and enjoy the break."),
    ))

add("ann-osprey-cutover", "Announcement: reporting moves to Quarry on 6 May", "Maribel Ocampo",
    "Company/Announcements", "announcement", "2025-05-01", r"""
Hello all,

After 18 months of Project Osprey, **Quarry becomes our single source for reporting on Tuesday 6 May 2025.**

- The BI tool's default connection switches to Quarry at 08:00. All 60 priority dashboards have been rebuilt and reconciled by Finance over two month-end closes.
- reportdb becomes read-only on 6 May and will be switched off on **30 September 2025**. If you have scripts or spreadsheets reading from reportdb, tell us in #ask-data now.
- Access to Quarry: request a role in the Access app. The VPN will no longer be needed for Quarry from mid-May.

Thanks to Finance (Rafael, Ana) for the patient parallel running, and to Kwame, Priyanka and Jorge.
– Maribel
""")

add("ann-kestrel-ga", "Announcement: Tollgate v3 (Project Kestrel) complete", "Adaeze Okafor",
    "Company/Announcements", "announcement", "2025-12-16", r"""
Hi all,

Project Kestrel is complete. Every Fernwick Pay authorisation, capture and refund now runs on Tollgate v3, and v2 has been deleted.

- p99 authorisation latency: 1.1 s → 640 ms.
- Tested capacity: 1,200 authorisations per second (3x our 2024 peak).
- Switching card processors now takes a flag change rather than a deploy.

It was not all smooth. INC-2025-077 in August and INC-2025-118 in early December (duplicate charges on recurring invoices, all refunded) hurt customers, and we are sorry for that. The idempotency design has been revised (rev 2) and we added daily duplicate detection.

Thank you to the Payments team, the DBAs, SRE and Customer Success.
– Adaeze
""")

add("ann-curlew-live", "Announcement: second region dub1 is live", "Tomasz Wierzbicki",
    "Company/Announcements", "announcement", "2025-11-12", r"""
Hi everyone,

As of today, **dub1 is live as our disaster recovery region** (Project Curlew). All customer-facing services run in both lon1 and dub1, with databases, Kafka, Redis and Strongbox replicated. dub1 serves 10% of read-only API traffic every day, so we know it works.

What this means:
- We can recover from the loss of lon1 within our targets (Ledger and Tollgate: RTO 1 hour, RPO 5 minutes).
- Sales and CS: you can now say "UK primary region with EU disaster recovery region". The DPA update lists both.
- Engineers: Shipyard deploys in-scope services to both regions and rejects single-region deploys.

Our first full failover game day is planned for March 2026.
– Tomasz
""")

add("ann-magpie-beta", "Announcement: try Magpie, the new intranet search (beta)", "Noor Haddad",
    "Company/Announcements", "announcement", "2026-01-26", r"""
Hi all,

Magpie, our new search across the wiki and Tracker, is in beta from today at search.fernwick.internal.

Try searching the way you would ask a colleague: "how do I roll back a deploy", "pto carry over", "login outage april", "INC-2025-077". Magpie understands our code names and acronyms and tells you when a page you found has a newer version or is a copy.

Please use the thumbs up/down on results – your feedback goes into the evaluation set we use to measure search quality. Google Drive comes in phase 2.

Feedback in #magpie.
– Noor
""")

add("ann-change-freeze-2025", "Reminder: December change freeze 2025", "Priya Raman",
    "Engineering/Announcements", "announcement", "2025-12-08", r"""
Engineering,

The December change freeze runs from **Monday 15 December 2025 to Monday 5 January 2026** for all customer-facing systems (Production Change Management Policy).

- Shipyard blocks production deploys during the freeze. Freeze exceptions need a CHG ticket and my approval; P1/P2 fixes and pre-approved security patches are allowed.
- Land dependency upgrades and migrations by Friday 12 December.
- The Kestrel idempotency TTL fix (rev 2) is already deployed; the `idempotency_keys` table truncation moves to January.
- On-call rotas over the holidays are in Beacon; check yours now.

Thanks, Priya
""")

add("ann-lisbon-move", "Announcement: Lisbon office moves to Avenida da Liberdade", "Joana Figueiredo",
    "Company/Announcements", "announcement", "2025-03-31", r"""
Olá a todos!

Our new Lisbon office at **Avenida da Liberdade 190, 5th floor** opens on **Monday 14 April 2025**. The last day in Alcântara is Thursday 10 April; Friday 11 April is a work-from-home day while the movers do their job.

- 64 desks (up from 38), four meeting rooms and a proper kitchen.
- Desks are booked in Deskly from 7 April.
- Pack your personal items in the labelled boxes by Wednesday 9 April.
- New badges will be handed out on the 14th at reception.

See the updated Lisbon office guide for transport and practical details.
– Joana
""")

add("ann-pto-policy-2025", "Announcement: new PTO and leave policy from February 2025", "Sofia Brandt",
    "Company/Announcements", "announcement", "2025-01-27", r"""
Hi everyone,

A new PTO and Leave Policy applies from 1 February 2025. The main changes:

- **Minimum time off:** everyone takes at least 15 days a year, including one block of 5 days.
- **Carry-over:** up to 5 days, used by 31 March (Portugal: until 30 April by agreement).
- **New leave types:** volunteering (2 days), moving house (1 day), learning days (3 days).
- **On-call:** PTO overlapping an on-call shift is approved only with a swap recorded in Beacon.

Allowances themselves are unchanged. The full policy is in HR/Policies and the PTO FAQ answers common questions. If your carry-over balance looks wrong, see HR-2210 – it was fixed on 8 January.
– Sofia
""")


# ---------------------------------------------------------------------------

def main():
    ids = [d["doc_id"] for d in DOCS]
    assert len(ids) == len(set(ids)), "duplicate doc_id"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docs.jsonl")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for d in DOCS:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"wrote {len(DOCS)} documents to {out}")


if __name__ == "__main__":
    main()
