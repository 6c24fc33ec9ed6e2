// Keycloak's password policy strings: parsing, formatting, the structured view, every rule's
// pass and fail, the order Keycloak reports violations in, the checklist and forced expiry.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { configurePasswordBlacklists, passwordBlacklist } from '../../src/login/password-blacklists.ts';
import {
  PasswordPolicyError, checkPassword, formatPasswordPolicy, formatPolicyViolation, parsePasswordPolicy, passwordChecklist,
  passwordExpired, passwordRules, policyOrder, withPasswordRules,
} from '../../src/login/password-policy.ts';

const FULL = 'length(8) and digits(1) and lowerCase(1) and upperCase(1) and specialChars(1) and notUsername(undefined) and passwordHistory(3) and forceExpiredPasswordChange(365) and hashIterations(27500) and regexPattern(^[^ ]+$)';

// The blacklists folder the policies below name files of.
let blacklists: string;
beforeAll(() => {
  blacklists = fs.mkdtempSync(path.join(os.tmpdir(), 'cloakroom-blacklists-'));
  fs.writeFileSync(path.join(blacklists, 'default.txt'), 'password\n123456\nQwerty123\n');
  fs.writeFileSync(path.join(blacklists, 'list.txt'), 'letmein\r\nwelcome1\r\n');
  configurePasswordBlacklists(blacklists);
});
afterAll(() => fs.rmSync(blacklists, { recursive: true, force: true }));

const check = (policy: string, password: string, username = 'jdoe', email: string | null = 'jdoe@example.com') =>
  checkPassword(parsePasswordPolicy(policy, { strict: true }), { password, username, email });

describe('parsing and formatting', () => {
  it('round-trips real Keycloak policy strings', () => {
    for (const policy of [
      FULL,
      'length(12) and notUsername and notEmail and notContainsUsername',
      'hashAlgorithm(pbkdf2-sha512) and passwordBlacklist(default.txt) and maxAuthAge(300) and passwordAge(30)',
      'maxLength(64) and regexPattern(^(?=.*[A-Z])(?=.*\\d).{8,}$)',
    ]) {
      expect(formatPasswordPolicy(parsePasswordPolicy(policy, { strict: true }))).toBe(policy);
    }
  });

  it('splits on " and " even inside a regex, as Keycloak does', () => {
    expect(() => parsePasswordPolicy('regexPattern(^(cats and dogs)$)', { strict: true })).toThrow('Invalid config for regexPattern: Not a valid regular expression');
  });

  it('reads ids and arguments as Keycloak does', () => {
    expect(parsePasswordPolicy(FULL).slice(0, 2)).toEqual([{ id: 'length', value: '8' }, { id: 'digits', value: '1' }]);
    expect(parsePasswordPolicy('notUsername(undefined)')).toEqual([{ id: 'notUsername', value: 'undefined' }]);
    expect(parsePasswordPolicy('length')).toEqual([{ id: 'length', value: undefined }]);
    expect(parsePasswordPolicy(' length(10) ')).toEqual([{ id: 'length', value: '10' }]);
    for (const empty of ['', '   ', null, undefined]) expect(parsePasswordPolicy(empty)).toEqual([]);
  });

  it('keeps the first position and the last value of a repeated policy (Keycloak normalizes it away)', () => {
    const entries = parsePasswordPolicy('length(8) and digits(2) and length(12)');
    expect(entries).toEqual([{ id: 'length', value: '12' }, { id: 'digits', value: '2' }]);
    expect(formatPasswordPolicy(entries)).toBe('length(12) and digits(2)');
  });

  it('refuses invalid policies in strict mode with Keycloak\'s wording', () => {
    const cases: Array<[string, string]> = [
      ['length(8) and noSuchPolicy(1)', 'Password policy not found'],
      ['length(abc)', 'Invalid config for length: Not a valid number'],
      ['digits(1.5)', 'Invalid config for digits: Not a valid number'],
      ['passwordHistory(99999999999)', 'Invalid config for passwordHistory: Not a valid number'],
      ['regexPattern', 'Invalid config for regexPattern: Config required'],
      ['regexPattern( )', 'Invalid config for regexPattern: White space not acepted'],
      ['regexPattern([a-z)', 'Invalid config for regexPattern: Not a valid regular expression'],
      [' and length(8)', 'Password policy not found'],
    ];
    for (const [policy, message] of cases) {
      expect(() => parsePasswordPolicy(policy, { strict: true }), policy).toThrow(PasswordPolicyError);
      expect(() => parsePasswordPolicy(policy, { strict: true }), policy).toThrow(message);
    }
  });

  it('skips unusable entries of stored policies (lenient)', () => {
    expect(parsePasswordPolicy('length(abc) and noSuchPolicy and digits(2) and regexPattern([)')).toEqual([{ id: 'digits', value: '2' }]);
    // Java's split drops a trailing empty part.
    expect(parsePasswordPolicy('length(8) and ', { strict: true })).toEqual([{ id: 'length', value: '8' }]);
  });
});

describe('structured rules', () => {
  it('gives every rule its value, with Keycloak\'s defaults for policies written without one', () => {
    expect(passwordRules(parsePasswordPolicy(FULL))).toEqual({
      minLength: 8, minDigits: 1, minLowerCase: 1, minUpperCase: 1, minSpecialChars: 1, notUsername: true,
      historyDepth: 3, maxAgeDays: 365, regexPatterns: ['^[^ ]+$'],
    });
    expect(passwordRules(parsePasswordPolicy('length and maxLength and passwordHistory and passwordAge and forceExpiredPasswordChange and notEmail and notContainsUsername'))).toEqual({
      minLength: 8, maxLength: 64, historyDepth: 3, notRecentlyUsedDays: 30, maxAgeDays: 365, notEmail: true, notContainsUsername: true,
    });
  });

  it('replaces the rule entries and keeps the others in place', () => {
    const entries = parsePasswordPolicy('hashAlgorithm(pbkdf2-sha512) and length(8) and passwordBlacklist(list.txt) and digits(1) and notUsername(undefined) and maxAuthAge(300)');
    const updated = withPasswordRules(entries, { minLength: 12, notUsername: true, minUpperCase: 2, historyDepth: 5 });
    expect(formatPasswordPolicy(updated)).toBe(
      'hashAlgorithm(pbkdf2-sha512) and length(12) and passwordBlacklist(list.txt) and notUsername(undefined) and maxAuthAge(300) and upperCase(2) and passwordHistory(5)',
    );
    expect(passwordRules(updated)).toEqual({ minLength: 12, minUpperCase: 2, notUsername: true, historyDepth: 5 });
    expect(formatPasswordPolicy(withPasswordRules(entries, {}))).toBe('hashAlgorithm(pbkdf2-sha512) and passwordBlacklist(list.txt) and maxAuthAge(300)');
    expect(formatPasswordPolicy(withPasswordRules([], { regexPatterns: ['^\\S+$'], notEmail: true }))).toBe('notEmail and regexPattern(^\\S+$)');
  });

  it('refuses values Keycloak could not read', () => {
    expect(() => withPasswordRules([], { minLength: 1.5 })).toThrow('Invalid config for length: Not a valid number');
    expect(() => withPasswordRules([], { regexPatterns: ['('] })).toThrow('Invalid config for regexPattern: Not a valid regular expression');
    expect(() => withPasswordRules([], { regexPatterns: ['a', 'b'] })).toThrow(PasswordPolicyError);
  });
});

describe('rules', () => {
  const cases: Array<{ policy: string; pass: string; fail: string; key: string; params: string[] }> = [
    { policy: 'length(8)', pass: '12345678', fail: '1234567', key: 'invalidPasswordMinLengthMessage', params: ['8'] },
    { policy: 'length', pass: '12345678', fail: '1234567', key: 'invalidPasswordMinLengthMessage', params: ['8'] },
    { policy: 'maxLength(10)', pass: '1234567890', fail: '12345678901', key: 'invalidPasswordMaxLengthMessage', params: ['10'] },
    { policy: 'digits(2)', pass: 'ab12', fail: 'ab1', key: 'invalidPasswordMinDigitsMessage', params: ['2'] },
    { policy: 'lowerCase(2)', pass: 'ABcd', fail: 'ABCd', key: 'invalidPasswordMinLowerCaseCharsMessage', params: ['2'] },
    { policy: 'upperCase(2)', pass: 'abCD', fail: 'abcD', key: 'invalidPasswordMinUpperCaseCharsMessage', params: ['2'] },
    { policy: 'specialChars(2)', pass: 'ab!?', fail: 'ab!c', key: 'invalidPasswordMinSpecialCharsMessage', params: ['2'] },
    { policy: 'notUsername(undefined)', pass: 'jdoe1', fail: 'jdoe', key: 'invalidPasswordNotUsernameMessage', params: [] },
    { policy: 'notContainsUsername', pass: 'j-doe-99', fail: 'my-JDoe-99', key: 'invalidPasswordNotContainsUsernameMessage', params: [] },
    { policy: 'notEmail', pass: 'jdoe@example.org', fail: 'JDoe@Example.com', key: 'invalidPasswordNotEmailMessage', params: [] },
    { policy: 'regexPattern(^[^ ]+$)', pass: 'no-spaces', fail: 'has space', key: 'invalidPasswordRegexPatternMessage', params: ['^[^ ]+$'] },
  ];
  for (const c of cases) {
    it(`${c.policy}: passes and fails with ${c.key}`, () => {
      expect(check(c.policy, c.pass)).toBeUndefined();
      expect(check(c.policy, c.fail)).toEqual({ rule: c.policy.replace(/\(.*$/, ''), messageKey: c.key, params: c.params });
    });
  }

  it('counts characters per UTF-16 unit as Java\'s Character tests do', () => {
    // Letters and digits of any script are neither special nor missing.
    expect(check('specialChars(1)', 'Äbc٣')).toMatchObject({ rule: 'specialChars' });
    expect(check('digits(1)', 'abc٣')).toBeUndefined();
    expect(check('lowerCase(2) and upperCase(1)', 'ßéÖ')).toBeUndefined();
    // An emoji is two surrogate units: two special characters, length 2.
    expect(check('specialChars(2)', 'ab😀')).toBeUndefined();
    expect(check('length(3)', '😀')).toMatchObject({ rule: 'length' });
    expect(check('specialChars(2)', 'a b')).toMatchObject({ rule: 'specialChars' });
    expect(check('specialChars(2)', 'a b_')).toBeUndefined();
  });

  it('matches regexPattern against the whole password (Java matches())', () => {
    expect(check('regexPattern(abc)', 'abc')).toBeUndefined();
    expect(check('regexPattern(abc)', 'xabcx')).toMatchObject({ rule: 'regexPattern' });
    expect(check('regexPattern(a|b)', 'ab')).toMatchObject({ rule: 'regexPattern' });
    expect(check('regexPattern((?i)secret.*)', 'SECRET-1')).toBeUndefined();
    expect(check('regexPattern(.*\\d)', 'abc1\n')).toMatchObject({ rule: 'regexPattern' });
  });

  it('compares the username exactly, but the e-mail and the contained username ignoring case', () => {
    expect(check('notUsername', 'JDOE')).toBeUndefined();
    expect(check('notEmail', 'anything', 'jdoe', null)).toBeUndefined();
  });

  it('leaves history, age and the non-check policies to others', () => {
    expect(check('passwordHistory(3) and passwordAge(10) and forceExpiredPasswordChange(1) and hashIterations(5) and maxAuthAge(1)', 'x')).toBeUndefined();
  });

  describe('passwordBlacklist(<file>)', () => {
    it('refuses a password of the list, ignoring case, and lets others through', () => {
      const refused = { rule: 'passwordBlacklist', messageKey: 'invalidPasswordBlacklistedMessage', params: [] };
      expect(check('passwordBlacklist(default.txt)', 'password')).toEqual(refused);
      expect(check('passwordBlacklist(default.txt)', 'PassWord')).toEqual(refused);
      expect(check('passwordBlacklist(default.txt)', 'qwerty123')).toEqual(refused);
      expect(check('passwordBlacklist(list.txt)', 'Welcome1')).toEqual(refused); // CRLF lines
      expect(check('passwordBlacklist(default.txt)', 'password1')).toBeUndefined();
      expect(check('passwordBlacklist(default.txt)', '')).toBeUndefined();
      expect(formatPolicyViolation(refused)).toBe('Invalid password: password is blacklisted.');
      expect(passwordBlacklist('default.txt').size).toBe(3);
    });

    it('refuses to set a policy naming a missing file, a path or no file', () => {
      expect(() => parsePasswordPolicy('passwordBlacklist(missing.txt)', { strict: true }))
        .toThrow(new PasswordPolicyError('Invalid config for passwordBlacklist: Password blacklist missing.txt not found!'));
      expect(() => parsePasswordPolicy('passwordBlacklist(../default.txt)', { strict: true }))
        .toThrow('Invalid config for passwordBlacklist: ../default.txt must not contain slashes!');
      expect(() => parsePasswordPolicy('passwordBlacklist(/etc/passwd)', { strict: true })).toThrow(/must not contain slashes/);
      expect(() => parsePasswordPolicy('passwordBlacklist', { strict: true })).toThrow('Invalid config for passwordBlacklist: Password blacklist name must not be empty!');
    });

    it('keeps a stored policy whose file is gone, and checks nothing with it', () => {
      const entries = parsePasswordPolicy('length(4) and passwordBlacklist(gone.txt)');
      expect(formatPasswordPolicy(entries)).toBe('length(4) and passwordBlacklist(gone.txt)');
      expect(checkPassword(entries, { password: 'password', username: 'u' })).toBeUndefined();
    });
  });

  it('reports the first violation in Keycloak\'s order (its HashMap iteration), not the order written', () => {
    const entries = parsePasswordPolicy(FULL);
    expect(policyOrder(entries)).toEqual([
      'forceExpiredPasswordChange', 'specialChars', 'hashIterations', 'upperCase', 'passwordHistory', 'lowerCase', 'length', 'regexPattern', 'digits', 'notUsername',
    ]);
    expect(checkPassword(entries, { password: 'a', username: 'jdoe' })).toMatchObject({ rule: 'specialChars' });
    expect(checkPassword(entries, { password: 'aB!', username: 'jdoe' })).toMatchObject({ rule: 'length' });
    expect(checkPassword(entries, { password: 'aB!xxxxx', username: 'jdoe' })).toMatchObject({ rule: 'digits' });
    expect(checkPassword(entries, { password: 'aB!1xxxx', username: 'jdoe' })).toBeUndefined();
  });

  it('formats violations in Keycloak\'s English', () => {
    expect(formatPolicyViolation({ rule: 'length', messageKey: 'invalidPasswordMinLengthMessage', params: ['8'] })).toBe('Invalid password: minimum length 8.');
    expect(formatPolicyViolation({ rule: 'passwordHistory', messageKey: 'invalidPasswordHistoryMessage', params: ['3'] }))
      .toBe('Invalid password: must not be equal to any of last 3 passwords.');
    expect(formatPolicyViolation({ rule: 'passwordAge', messageKey: 'invalidPasswordGenericMessage', params: ['30'] }))
      .toBe("Invalid password: new password doesn't match password policies.");
  });
});

describe('checklist', () => {
  it('lists the checkable rules in the policy\'s order with browser checks', () => {
    const items = passwordChecklist(parsePasswordPolicy(`${FULL} and maxLength(20) and digits(0) and notEmail and notContainsUsername`));
    expect(items.map((i) => [i.rule, i.messageKey, i.params, i.check.kind, i.check.arg])).toEqual([
      ['length', 'passwordRuleMinLength', ['8'], 'minLength', '8'],
      ['lowerCase', 'passwordRuleLowerCase', ['1'], 'lowerCase', '1'],
      ['upperCase', 'passwordRuleUpperCase', ['1'], 'upperCase', '1'],
      ['specialChars', 'passwordRuleSpecialChars', ['1'], 'specialChars', '1'],
      ['notUsername', 'passwordRuleNotUsername', [], 'notUsername', undefined],
      ['regexPattern', 'passwordRuleRegexPattern', [], 'regex', items.find((i) => i.rule === 'regexPattern')!.check.arg],
      ['maxLength', 'passwordRuleMaxLength', ['20'], 'maxLength', '20'],
      ['notEmail', 'passwordRuleNotEmail', [], 'notEmail', undefined],
      ['notContainsUsername', 'passwordRuleNotContainsUsername', [], 'notContainsUsername', undefined],
    ]);
    const regex = items.find((i) => i.rule === 'regexPattern')!.check;
    const compiled = new RegExp(regex.arg!, regex.flags);
    expect(compiled.test('nospace')).toBe(true);
    expect(compiled.test('a space')).toBe(false);
  });
});

describe('forced expiry', () => {
  const entries = parsePasswordPolicy('forceExpiredPasswordChange(30)');
  const set = new Date('2025-01-01T00:00:00Z');
  it('expires a password once strictly more than the policy\'s days have passed', () => {
    expect(passwordExpired(entries, set, new Date('2025-01-31T00:00:00Z'))).toBe(false);
    expect(passwordExpired(entries, set, new Date('2025-01-31T00:00:01Z'))).toBe(true);
    expect(passwordExpired(parsePasswordPolicy('forceExpiredPasswordChange'), set, new Date('2025-12-31T00:00:00Z'))).toBe(false);
    expect(passwordExpired(parsePasswordPolicy('forceExpiredPasswordChange'), set, new Date('2026-01-02T00:00:00Z'))).toBe(true);
  });
  it('never expires without the policy', () => {
    expect(passwordExpired(parsePasswordPolicy('length(8)'), set, new Date('2099-01-01T00:00:00Z'))).toBe(false);
  });
});
