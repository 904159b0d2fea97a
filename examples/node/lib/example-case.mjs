// The invented case the round trip sends. Every value is made up; the subjects are
// pseudonymous references, never names.

/** Data classes that locate or identify the victim; none of them may ever reach nhs. */
export const VICTIM_CLASSES = ['victim_location', 'victim_identity', 'victim_safety_plan'];

const SUSPECT = { ref: 'POL-NOM-900001', category: 'suspect' };
const VICTIM = { ref: 'POL-NOM-900002', category: 'victim' };

/** police → probation, nhs, advocacy. The advocacy flow rests on the victim's consent. */
export function caseReferral() {
  return {
    maspType: 'case_referral',
    caseId: 'RC-NODE-2026-0001',
    purpose: 'risk_management', // agreed for all three recipients (message.md, Purposes)
    subjects: [SUSPECT, VICTIM],
    consentRef: 'CONSENT-900002-V1',
    body: {
      perpetrator_name: { given: 'Alex', family: 'Example' },
      perpetrator_date_of_birth: '1990-01-01',
      perpetrator_address: { lines: ['1 Invented Street'], town: 'Testtown', postcode: 'ZZ1 1ZZ' },
      offence_codes: ['PH97003'],
      cj_status: 'bailed',
      crime_reference: 'RC/2026/000001',
      behaviour_summary: 'Repeated unwanted contact after the end of a relationship (invented test case).',
      sash_concern_level: 'medium',
      sdash_yes_count: 7,
      risk_assessed_on: '2026-11-20',
      victim_name: { given: 'Sam', family: 'Sample' },
      victim_relationship_to_perpetrator: 'ex_partner',
      victim_address: { lines: ['2 Fictional Road'], town: 'Testtown', postcode: 'ZZ1 2ZZ' },
      victim_phone: '+44 7700 900123',
      exclusion_zones: [{ description: 'Not to enter Fictional Road, Testtown', imposed_by: 'bail' }],
      referrer: { name: 'PC Test Officer', role: 'Investigating officer', agency: 'police', staff_ref: 'T0001', email: 'officer.t0001@police.example' },
    },
  };
}

/**
 * The victim's consent to the referral reaching advocacy, recorded by police (a victim
 * consent recorder in the shipped agreement) as a consent_change under the referral's
 * consent_ref, about the same victim subject.
 */
export function victimConsent(referral) {
  const today = new Date().toISOString().slice(0, 10);
  return {
    maspType: 'consent_change',
    caseId: referral.caseId,
    purpose: 'case_management',
    subjects: [VICTIM],
    consentRef: referral.consentRef,
    body: {
      victim_consent: {
        status: 'given',
        scope: { purposes: [referral.purpose], recipients: ['advocacy'], message_types: [referral.maspType] },
        effective_date: today,
        given_by: 'subject',
      },
    },
  };
}
