// Keycloak's passwordBlacklist(<file>) policy: a file of one password per line in the blacklists
// folder (Keycloak: data/password-blacklists; here <data dir>/password-blacklists or
// CLOAKROOM_PASSWORD_BLACKLISTS_DIR), matched case-insensitively. Keycloak keeps each list in a
// Bloom filter (a 1-in-10,000 false positive rate); here each line is kept as the first 8 bytes of
// its SHA-256 in a sorted array: 8 bytes per password, and a false positive about once in 10^12
// lookups for a list of ten million. A list is read on first use (synchronously, as Keycloak's:
// about 1.4 s per million lines on a 2-vCPU VM) and kept for the process.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export type PasswordBlacklist = { readonly name: string; readonly size: number; contains(password: string): boolean };

let folder: string | undefined;
const loaded = new Map<string, PasswordBlacklist>();

/** Where the lists are read from; set once at start-up (server and CLI). */
export function configurePasswordBlacklists(dir: string): void {
  if (folder !== dir) loaded.clear();
  folder = dir;
}

/** A list cannot be used: worded as Keycloak's policy errors ("Invalid config for passwordBlacklist: ..."). */
export class PasswordBlacklistError extends Error {}

/** The named list, read on first use; throws PasswordBlacklistError when it cannot be. */
export function passwordBlacklist(name: string | undefined): PasswordBlacklist {
  const listName = name?.trim() ?? '';
  if (listName === '') throw new PasswordBlacklistError('Password blacklist name must not be empty!');
  // A name is a file of the folder, never a path (Keycloak refuses '/' for the same reason).
  if (listName.includes('/') || listName.includes('\\') || listName === '.' || listName === '..') {
    throw new PasswordBlacklistError(`${listName} must not contain slashes!`);
  }
  const cached = loaded.get(listName);
  if (cached) return cached;
  if (folder === undefined) throw new PasswordBlacklistError(`Password blacklist ${listName} not found!`);
  let text: string;
  try {
    text = fs.readFileSync(path.join(folder, listName), 'utf8');
  } catch {
    throw new PasswordBlacklistError(`Password blacklist ${listName} not found!`);
  }
  const list = hashedList(listName, text.split(/\r?\n/).filter((line) => line !== ''));
  loaded.set(listName, list);
  return list;
}

/** The first 8 bytes of the SHA-256 of the lower-cased password (the one-shot hex form is the fastest to get). */
function fingerprint(password: string): bigint {
  return BigInt(`0x${crypto.hash('sha256', password.toLowerCase()).slice(0, 16)}`);
}

function hashedList(name: string, lines: string[]): PasswordBlacklist {
  const fingerprints = new BigUint64Array(lines.length);
  for (let i = 0; i < lines.length; i++) fingerprints[i] = fingerprint(lines[i]!);
  fingerprints.sort();
  return {
    name,
    size: fingerprints.length,
    contains(password) {
      const wanted = fingerprint(password);
      let low = 0;
      let high = fingerprints.length - 1;
      while (low <= high) {
        const middle = (low + high) >>> 1;
        const value = fingerprints[middle]!;
        if (value === wanted) return true;
        if (value < wanted) low = middle + 1;
        else high = middle - 1;
      }
      return false;
    },
  };
}
