// The invented case the round trip sends. Every value is made up; the subjects are
// pseudonymous references, never names.

export const VICTIM_CLASSES = ['victim_location', 'victim_identity', 'victim_safety_plan'];

export function caseReferral() {
  return {
    masp_type: 'case_referral',
    case_id: 'RC-NODE-2026-0001',
    subjects: [
      { ref: 'POL-NOM-900001', category: 'suspect' },
      { ref: 'POL-NOM-900002', category: 'victim' },
    ],
    body: {
      perpetrator_name: { given: 'Alex', family: 'Example' },
      perpetrator_date_of_birth: '1990-01-01',
      perpetrator_address: { lines: ['1 Invented Street'], town: 'Testtown', postcode: 'ZZ1 1ZZ' },
      offence_codes: ['PH97003'],
      cj_status: 'bailed',
      crime_reference: 'RC/2026/000001',
      behaviour_summary: 'Repeated unwanted contact after the end of a relationship (invented test case).',
      sash_concern_level: 'high',
      sdash_yes_count: 7,
      risk_assessed_on: '2026-11-20',
      victim_name: { given: 'Sam', family: 'Sample' },
      victim_relationship_to_perpetrator: 'ex_partner',
      victim_address: { lines: ['2 Fictional Road'], town: 'Testtown', postcode: 'ZZ1 2ZZ' },
      victim_phone: '+44 7700 900123',
      exclusion_zones: [{ description: 'Not to enter Fictional Road, Testtown', imposed_by: 'bail' }],
      referrer: { name: 'PC Test Officer', role: 'Investigating officer', agency: 'police', staff_ref: 'T0001' },
    },
  };
}
