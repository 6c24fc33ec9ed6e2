// The AES-256-GCM envelope for secrets at rest, key derivation and the dev key file.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { createSecretBox, loadOrCreateKeyFile } from '../../src/crypto/secret-box.ts';

const key = crypto.randomBytes(32);
const box = createSecretBox(key);

/** Flips one bit of the decoded envelope at `index` (0-11 iv, 12-27 tag, 28+ ciphertext). */
function flip(sealed: string, index: number): string {
  const raw = Buffer.from(sealed.slice(3), 'base64url');
  raw[index] = raw[index]! ^ 0x01;
  return `v1.${raw.toString('base64url')}`;
}

describe('seal and open', () => {
  it('round-trips text, including empty and non-ASCII strings', () => {
    for (const plaintext of ['client-secret-123', '', 'päss wörd ✓ 秘密', JSON.stringify({ kty: 'RSA', d: 'x'.repeat(2000) })]) {
      const sealed = box.seal(plaintext);
      expect(sealed.startsWith('v1.')).toBe(true);
      expect(box.open(sealed)).toBe(plaintext);
    }
  });

  it('does not reveal the plaintext and differs every time (random IV)', () => {
    const a = box.seal('same secret');
    const b = box.seal('same secret');
    expect(a).not.toBe(b);
    expect(a).not.toContain('same secret');
    expect(Buffer.from(a.slice(3), 'base64url').toString('utf8')).not.toContain('same secret');
    // iv[12] + tag[16] + ciphertext (GCM: as long as the plaintext).
    expect(Buffer.from(a.slice(3), 'base64url')).toHaveLength(12 + 16 + 'same secret'.length);
  });

  it('rejects a tampered envelope (iv, tag or ciphertext)', () => {
    const sealed = box.seal('do not touch');
    for (const index of [0, 11, 12, 27, 28, 28 + 'do not touch'.length - 1]) {
      expect(() => box.open(flip(sealed, index)), `byte ${index}`).toThrow();
    }
  });

  it('rejects a truncated or unprefixed envelope', () => {
    const sealed = box.seal('x');
    expect(() => box.open(sealed.slice(0, 20))).toThrow(/truncated/);
    expect(() => box.open(sealed.slice(3))).toThrow(/not a sealed secret/);
    expect(() => box.open('plain-text-secret')).toThrow(/not a sealed secret/);
  });

  it('cannot be opened with another key', () => {
    const sealed = box.seal('for one key only');
    expect(() => createSecretBox(crypto.randomBytes(32)).open(sealed)).toThrow();
    expect(createSecretBox(Buffer.from(key)).open(sealed)).toBe('for one key only');
  });

  it('requires a 32-byte key', () => {
    expect(() => createSecretBox(crypto.randomBytes(16))).toThrow(/32 bytes/);
    expect(() => createSecretBox(crypto.randomBytes(33))).toThrow(/32 bytes/);
  });
});

describe('derive', () => {
  it('is deterministic per purpose, differs between purposes and keys, and is not the master key', () => {
    const cookies = box.derive('cookies');
    expect(cookies).toHaveLength(32);
    expect(box.derive('cookies')).toEqual(cookies);
    expect(createSecretBox(Buffer.from(key)).derive('cookies')).toEqual(cookies);
    expect(box.derive('hmac')).not.toEqual(cookies);
    expect(createSecretBox(crypto.randomBytes(32)).derive('cookies')).not.toEqual(cookies);
    expect(cookies).not.toEqual(key);
  });
});

describe('loadOrCreateKeyFile', () => {
  const dirs: string[] = [];
  const tempDir = (): string => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloakroom-keyfile-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates an owner-only key file on first use and returns the same key afterwards', () => {
    const dataDir = path.join(tempDir(), 'nested', 'data');
    const created = loadOrCreateKeyFile(dataDir);
    expect(created).toHaveLength(32);
    const file = path.join(dataDir, 'master.key');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64')).toEqual(created);
    expect(loadOrCreateKeyFile(dataDir)).toEqual(created);
    // A box from the file's key opens what the first one sealed.
    expect(createSecretBox(loadOrCreateKeyFile(dataDir)).open(createSecretBox(created).seal('persisted'))).toBe('persisted');
  });

  it('makes a different key for a different directory', () => {
    expect(loadOrCreateKeyFile(tempDir())).not.toEqual(loadOrCreateKeyFile(tempDir()));
  });

  it('refuses a key file that does not hold 32 bytes', () => {
    const dataDir = tempDir();
    fs.writeFileSync(path.join(dataDir, 'master.key'), Buffer.alloc(16).toString('base64'));
    expect(() => loadOrCreateKeyFile(dataDir)).toThrow(/32-byte/);
  });
});
