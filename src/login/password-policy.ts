// Keycloak's password policy as functions of its policy string
// (`length(8) and digits(1) and notUsername(undefined) ...`): parsing with Keycloak's rules and
// error wording, the structured view the Admin API shows, the checks that need no stored data
// (history and age need the user's stored hashes: password-change.ts; blacklists are files:
// password-blacklists.ts), the page's live checklist and forced expiry. Semantics follow
// Keycloak 26's PasswordPolicy and its policy providers.
import { passwordBlacklist, PasswordBlacklistError } from './password-blacklists.ts';

export type PolicyEntry = { id: string; value: string | undefined };

/** An invalid policy string, worded as Keycloak's RealmAdminResource answers it. */
export class PasswordPolicyError extends Error {}

type Kind = 'int' | 'flag' | 'string' | 'regex' | 'blacklist';

/** Keycloak's policy providers: how each reads its argument and what it means without one. */
const POLICIES: ReadonlyMap<string, { kind: Kind; fallback?: number }> = new Map([
  ['length', { kind: 'int', fallback: 8 }],
  ['maxLength', { kind: 'int', fallback: 64 }],
  ['digits', { kind: 'int', fallback: 1 }],
  ['lowerCase', { kind: 'int', fallback: 1 }],
  ['upperCase', { kind: 'int', fallback: 1 }],
  ['specialChars', { kind: 'int', fallback: 1 }],
  ['notUsername', { kind: 'flag' }],
  ['notContainsUsername', { kind: 'flag' }],
  ['notEmail', { kind: 'flag' }],
  ['regexPattern', { kind: 'regex' }],
  ['passwordHistory', { kind: 'int', fallback: 3 }],
  ['passwordAge', { kind: 'int', fallback: 30 }],
  ['forceExpiredPasswordChange', { kind: 'int', fallback: 365 }],
  ['hashAlgorithm', { kind: 'string' }],
  ['hashIterations', { kind: 'int', fallback: -1 }],
  // A file of the blacklists folder (password-blacklists.ts).
  ['passwordBlacklist', { kind: 'blacklist' }],
  ['maxAuthAge', { kind: 'int', fallback: -1 }],
]);

const INT32 = /^[+-]?\d+$/;
const isJavaInt = (value: string): boolean => INT32.test(value) && Math.abs(Number(value)) <= 2 ** 31 - (value.startsWith('-') ? 0 : 1);

/**
 * A Java regex as matches() uses it: the whole input. Anchored with lookarounds (not ^/$) so the
 * anchors hold whatever the flags; a leading (?i)/(?s)/(?m) becomes a JS flag.
 */
export function compileJavaRegex(pattern: string): RegExp | undefined {
  const inline = /^\(\?([ims]+)\)/.exec(pattern);
  const source = inline ? pattern.slice(inline[0].length) : pattern;
  const flags = `u${[...new Set(inline?.[1] ?? '')].join('')}`;
  try {
    // Compiled alone first: a pattern that compiles on its own cannot break out of the group.
    new RegExp(source, flags);
    return new RegExp(`(?<![\\s\\S])(?:${source})(?![\\s\\S])`, flags);
  } catch {
    return undefined;
  }
}

/**
 * Why Keycloak would refuse this entry (its wording), or undefined. A blacklist file is only
 * looked for when the policy is set (`files`): a stored policy keeps naming a file that is gone.
 */
function entryProblem(id: string, value: string | undefined, files = false): string | undefined {
  const policy = POLICIES.get(id);
  if (!policy) return 'Password policy not found';
  const invalid = (reason: string): string => `Invalid config for ${id}: ${reason}`;
  if (policy.kind === 'int' && value !== undefined && !isJavaInt(value)) return invalid('Not a valid number');
  if (policy.kind === 'regex') {
    if (value === undefined) return invalid('Config required');
    // Keycloak's own spelling.
    if (value.trim() === '') return invalid('White space not acepted');
    if (!compileJavaRegex(value)) return invalid('Not a valid regular expression');
  }
  if (policy.kind === 'blacklist' && files) {
    try {
      passwordBlacklist(value);
    } catch (error) {
      if (error instanceof PasswordBlacklistError) return invalid(error.message);
      throw error;
    }
  }
  return undefined;
}

/**
 * Keycloak's PasswordPolicy.parse: entries split on " and ", the id is the text before "(", the
 * argument runs to the last character but one. A repeated id keeps its first position and its
 * last value (Keycloak's LinkedHashMap). strict (admin writes): an unknown id or a bad argument
 * throws PasswordPolicyError; lenient (stored data): such entries are skipped.
 */
export function parsePasswordPolicy(policy: string | undefined | null, options: { strict?: boolean } = {}): PolicyEntry[] {
  if (!policy || policy.trim() === '') return [];
  const entries = new Map<string, PolicyEntry>();
  const parts = policy.split(' and ');
  // Java's String.split drops trailing empty strings.
  while (parts.length > 0 && parts.at(-1) === '') parts.pop();
  for (const part of parts) {
    const text = part.trim();
    const open = text.indexOf('(');
    const id = (open === -1 ? text : text.slice(0, open)).trim();
    const value = open === -1 ? undefined : text.slice(open + 1, Math.max(open + 1, text.length - 1));
    const problem = entryProblem(id, value, options.strict);
    if (problem) {
      if (options.strict) throw new PasswordPolicyError(problem);
      continue;
    }
    entries.set(id, { id, value });
  }
  return [...entries.values()];
}

/** Keycloak's PasswordPolicy.Builder.asString: `id(arg)`, or the bare id without an argument. */
export function formatPasswordPolicy(entries: PolicyEntry[]): string {
  return entries.map((e) => (e.value !== undefined && e.value.trim() !== '' ? `${e.id}(${e.value})` : e.id)).join(' and ');
}

function find(entries: PolicyEntry[], id: string): PolicyEntry | undefined {
  let found: PolicyEntry | undefined;
  for (const entry of entries) if (entry.id === id) found = entry;
  return found;
}

/** An int policy's number (its default without an argument); undefined when absent or unreadable. */
function intOf(entries: PolicyEntry[], id: string): number | undefined {
  const entry = find(entries, id);
  if (!entry) return undefined;
  if (entry.value === undefined) return POLICIES.get(id)?.fallback;
  return isJavaInt(entry.value) ? Number(entry.value) : undefined;
}

function regexOf(entries: PolicyEntry[]): { pattern: string; regex: RegExp } | undefined {
  const value = find(entries, 'regexPattern')?.value;
  const regex = value === undefined || value.trim() === '' ? undefined : compileJavaRegex(value);
  return regex && value !== undefined ? { pattern: value, regex } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Structured view

export type PasswordRules = {
  minLength?: number; maxLength?: number; minLowerCase?: number; minUpperCase?: number; minDigits?: number; minSpecialChars?: number;
  notUsername?: boolean; notContainsUsername?: boolean; notEmail?: boolean; regexPatterns?: string[];
  historyDepth?: number; notRecentlyUsedDays?: number; maxAgeDays?: number;
};

const INT_RULES = [
  ['minLength', 'length'], ['maxLength', 'maxLength'], ['minLowerCase', 'lowerCase'], ['minUpperCase', 'upperCase'],
  ['minDigits', 'digits'], ['minSpecialChars', 'specialChars'], ['historyDepth', 'passwordHistory'],
  ['notRecentlyUsedDays', 'passwordAge'], ['maxAgeDays', 'forceExpiredPasswordChange'],
] as const;
const FLAG_RULES = [['notUsername', 'notUsername'], ['notContainsUsername', 'notContainsUsername'], ['notEmail', 'notEmail']] as const;
/** Policy ids that PasswordRules covers; withPasswordRules leaves every other entry alone. */
const RULE_IDS: ReadonlySet<string> = new Set([...INT_RULES.map(([, id]) => id), ...FLAG_RULES.map(([, id]) => id), 'regexPattern']);

export function passwordRules(entries: PolicyEntry[]): PasswordRules {
  const rules: PasswordRules = {};
  for (const [key, id] of INT_RULES) {
    const n = intOf(entries, id);
    if (n !== undefined) rules[key] = n;
  }
  for (const [key, id] of FLAG_RULES) if (find(entries, id)) rules[key] = true;
  const regex = regexOf(entries);
  if (regex) rules.regexPatterns = [regex.pattern];
  return rules;
}

/**
 * The entries with their rule entries replaced by `rules` (an absent or false rule is removed):
 * kept rules stay where they were, new ones are appended; hashAlgorithm, hashIterations,
 * passwordBlacklist, maxAuthAge... stay in place. Throws PasswordPolicyError for a bad value.
 */
export function withPasswordRules(entries: PolicyEntry[], rules: PasswordRules): PolicyEntry[] {
  const wanted = new Map<string, string | undefined>();
  for (const [key, id] of INT_RULES) {
    const n = rules[key];
    if (n === undefined) continue;
    if (!Number.isSafeInteger(n) || !isJavaInt(String(n))) throw new PasswordPolicyError(`Invalid config for ${id}: Not a valid number`);
    wanted.set(id, String(n));
  }
  for (const [key, id] of FLAG_RULES) if (rules[key]) wanted.set(id, find(entries, id)?.value);
  const patterns = rules.regexPatterns ?? [];
  // Keycloak keeps one regexPattern per policy (a second one would replace the first).
  if (patterns.length > 1) throw new PasswordPolicyError('Invalid config for regexPattern: only one pattern is supported');
  if (patterns[0] !== undefined) {
    const problem = entryProblem('regexPattern', patterns[0]);
    if (problem) throw new PasswordPolicyError(problem);
    wanted.set('regexPattern', patterns[0]);
  }
  const out: PolicyEntry[] = [];
  for (const entry of entries) {
    if (!RULE_IDS.has(entry.id)) out.push(entry);
    else if (wanted.has(entry.id) && !out.some((e) => e.id === entry.id)) out.push({ id: entry.id, value: wanted.get(entry.id) });
  }
  for (const [id, value] of wanted) if (!out.some((e) => e.id === id)) out.push({ id, value });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks

export type PolicyViolation = { rule: string; messageKey: string; params: string[] };

const javaHash = (s: string): number => {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  return h;
};

/**
 * The order Keycloak runs the policies in: PasswordPolicy keeps them in a java.util.HashMap, so
 * they iterate by hash bucket (insertion order within a bucket), not in the order written.
 */
export function policyOrder(entries: PolicyEntry[]): string[] {
  let capacity = 16;
  while (entries.length > capacity * 0.75) capacity *= 2;
  const bucket = (id: string): number => {
    const h = javaHash(id);
    return (h ^ (h >>> 16)) & (capacity - 1);
  };
  return entries.map((e, index) => ({ id: e.id, index, bucket: bucket(e.id) }))
    .sort((a, b) => a.bucket - b.bucket || a.index - b.index).map((e) => e.id);
}

// Java's Character tests, one UTF-16 unit at a time as Keycloak's loops over toCharArray() do.
const DIGIT = /\p{Nd}/u;
const LOWER = /\p{Lowercase}/u;
const UPPER = /\p{Uppercase}/u;
const LETTER_OR_DIGIT = /[\p{L}\p{Nd}]/u;
const count = (password: string, test: (unit: string) => boolean): number => {
  let n = 0;
  for (let i = 0; i < password.length; i++) if (test(password[i]!)) n++;
  return n;
};

const MIN_COUNT_RULES: Record<string, { messageKey: string; matches: (unit: string) => boolean }> = {
  digits: { messageKey: 'invalidPasswordMinDigitsMessage', matches: (u) => DIGIT.test(u) },
  lowerCase: { messageKey: 'invalidPasswordMinLowerCaseCharsMessage', matches: (u) => LOWER.test(u) },
  upperCase: { messageKey: 'invalidPasswordMinUpperCaseCharsMessage', matches: (u) => UPPER.test(u) },
  specialChars: { messageKey: 'invalidPasswordMinSpecialCharsMessage', matches: (u) => !LETTER_OR_DIGIT.test(u) },
};

type CheckInput = { password: string; username: string; email?: string | null };

function checkRule(entries: PolicyEntry[], id: string, input: CheckInput): PolicyViolation | undefined {
  const { password, username, email } = input;
  const violation = (messageKey: string, params: string[] = []): PolicyViolation => ({ rule: id, messageKey, params });
  switch (id) {
    case 'length': {
      const min = intOf(entries, id);
      return min !== undefined && password.length < min ? violation('invalidPasswordMinLengthMessage', [String(min)]) : undefined;
    }
    case 'maxLength': {
      const max = intOf(entries, id);
      return max !== undefined && password.length > max ? violation('invalidPasswordMaxLengthMessage', [String(max)]) : undefined;
    }
    case 'digits': case 'lowerCase': case 'upperCase': case 'specialChars': {
      const min = intOf(entries, id);
      const rule = MIN_COUNT_RULES[id]!;
      return min !== undefined && count(password, rule.matches) < min ? violation(rule.messageKey, [String(min)]) : undefined;
    }
    case 'notUsername':
      return username === password ? violation('invalidPasswordNotUsernameMessage') : undefined;
    case 'notContainsUsername':
      return password.toLowerCase().includes(username.toLowerCase()) ? violation('invalidPasswordNotContainsUsernameMessage') : undefined;
    case 'notEmail':
      return email && email.toLowerCase() === password.toLowerCase() ? violation('invalidPasswordNotEmailMessage') : undefined;
    case 'regexPattern': {
      const regex = regexOf(entries);
      return regex && !regex.regex.test(password) ? violation('invalidPasswordRegexPatternMessage', [regex.pattern]) : undefined;
    }
    case 'passwordBlacklist':
      return blacklisted(find(entries, id)?.value, password) ? violation('invalidPasswordBlacklistedMessage') : undefined;
    default:
      return undefined; // history and age need stored hashes; the others are not checks
  }
}

/**
 * Whether the named list holds the password. A list that cannot be read (its file removed since
 * the policy was set) checks nothing, as Keycloak's provider does with a list it could not load.
 */
function blacklisted(listName: string | undefined, password: string): boolean {
  try {
    return passwordBlacklist(listName).contains(password);
  } catch (error) {
    if (error instanceof PasswordBlacklistError) return false;
    throw error;
  }
}

/** Every rule but history and age (those need stored data), in Keycloak's order; the first violation. */
export function checkPassword(entries: PolicyEntry[], input: CheckInput): PolicyViolation | undefined {
  for (const id of policyOrder(entries)) {
    const violation = checkRule(entries, id, input);
    if (violation) return violation;
  }
  return undefined;
}

/** forceExpiredPasswordChange(days): a password set longer ago than that must be changed at the next login. */
export function passwordExpired(entries: PolicyEntry[], passwordCreatedAt: Date, now: Date = new Date()): boolean {
  const days = intOf(entries, 'forceExpiredPasswordChange');
  if (days === undefined) return false;
  // Keycloak's UpdatePassword.evaluateTriggers: strictly more time than the policy allows.
  return now.getTime() - passwordCreatedAt.getTime() > days * 86_400_000;
}

/** The history depth and "not recently used" days, as Keycloak reads them (-1 = no such policy). */
export function historyPolicy(entries: PolicyEntry[]): { depth: number; ageDays: number } {
  return { depth: intOf(entries, 'passwordHistory') ?? -1, ageDays: intOf(entries, 'passwordAge') ?? -1 };
}

// ---------------------------------------------------------------------------------------------
// The page's live checklist

export type ChecklistItem = {
  rule: string;
  messageKey: string;
  params: string[];
  /** What the browser script evaluates; a regex comes as a JS source (already anchored) and its flags. */
  check: { kind: 'minLength' | 'maxLength' | 'lowerCase' | 'upperCase' | 'digits' | 'specialChars' | 'notUsername' | 'notContainsUsername' | 'notEmail' | 'regex'; arg?: string; flags?: string };
};

const CHECKLIST: Record<string, { messageKey: string; kind: ChecklistItem['check']['kind'] }> = {
  length: { messageKey: 'passwordRuleMinLength', kind: 'minLength' },
  maxLength: { messageKey: 'passwordRuleMaxLength', kind: 'maxLength' },
  lowerCase: { messageKey: 'passwordRuleLowerCase', kind: 'lowerCase' },
  upperCase: { messageKey: 'passwordRuleUpperCase', kind: 'upperCase' },
  digits: { messageKey: 'passwordRuleDigits', kind: 'digits' },
  specialChars: { messageKey: 'passwordRuleSpecialChars', kind: 'specialChars' },
  notUsername: { messageKey: 'passwordRuleNotUsername', kind: 'notUsername' },
  notContainsUsername: { messageKey: 'passwordRuleNotContainsUsername', kind: 'notContainsUsername' },
  notEmail: { messageKey: 'passwordRuleNotEmail', kind: 'notEmail' },
  regexPattern: { messageKey: 'passwordRuleRegexPattern', kind: 'regex' },
};

/** One item per rule the page can check as the user types, in the order the policy lists them. */
export function passwordChecklist(entries: PolicyEntry[]): ChecklistItem[] {
  const items: ChecklistItem[] = [];
  for (const entry of entries) {
    const item = CHECKLIST[entry.id];
    if (!item) continue;
    if (item.kind === 'regex') {
      const regex = regexOf(entries);
      if (regex) items.push({ rule: entry.id, messageKey: item.messageKey, params: [], check: { kind: 'regex', arg: regex.regex.source, flags: regex.regex.flags } });
      continue;
    }
    if (POLICIES.get(entry.id)?.kind !== 'int') {
      items.push({ rule: entry.id, messageKey: item.messageKey, params: [], check: { kind: item.kind } });
      continue;
    }
    const n = intOf(entries, entry.id);
    // A minimum of 0 always holds: nothing to show.
    if (n === undefined || (item.kind !== 'maxLength' && n <= 0)) continue;
    items.push({ rule: entry.id, messageKey: item.messageKey, params: [String(n)], check: { kind: item.kind, arg: String(n) } });
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Messages for API answers

/** English texts of Keycloak's (admin) message bundle, for Admin API errors and import failures. */
const MESSAGES_EN: Record<string, string> = {
  invalidPasswordMinLengthMessage: 'Invalid password: minimum length {0}.',
  invalidPasswordMaxLengthMessage: 'Invalid password: maximum length {0}.',
  invalidPasswordMinDigitsMessage: 'Invalid password: must contain at least {0} numerical digits.',
  invalidPasswordMinLowerCaseCharsMessage: 'Invalid password: must contain at least {0} lower case characters.',
  invalidPasswordMinUpperCaseCharsMessage: 'Invalid password: must contain at least {0} upper case characters.',
  invalidPasswordMinSpecialCharsMessage: 'Invalid password: must contain at least {0} special characters.',
  invalidPasswordNotUsernameMessage: 'Invalid password: must not be equal to the username.',
  invalidPasswordNotContainsUsernameMessage: 'Invalid password: Can not contain the username.',
  invalidPasswordNotEmailMessage: 'Invalid password: must not be equal to the email.',
  invalidPasswordRegexPatternMessage: 'Invalid password: fails to match regex pattern(s).',
  invalidPasswordHistoryMessage: 'Invalid password: must not be equal to any of last {0} passwords.',
  invalidPasswordBlacklistedMessage: 'Invalid password: password is blacklisted.',
  invalidPasswordGenericMessage: "Invalid password: new password doesn't match password policies.",
  finessePasswordManagedMessage: 'The password of this account is managed in Cisco Finesse.',
};

/** A violation in English, as Keycloak's Admin API formats it (MessageFormat with the params). */
export function formatPolicyViolation(violation: PolicyViolation): string {
  const text = MESSAGES_EN[violation.messageKey] ?? violation.messageKey;
  return text.replace(/\{(\d+)\}/g, (match, i: string) => violation.params[Number(i)] ?? match);
}
