// AES-256-GCM envelope for secrets at rest (client secrets, private keys, IdP and LDAP
// credentials). Format: "v1." + base64url(iv[12] | tag[16] | ciphertext).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export type SecretBox = {
  seal(plaintext: string): string;
  open(sealed: string): string;
  /** A 32-byte key for one purpose (cookie signing, HMAC digests), derived from the master key. */
  derive(purpose: string): Buffer;
};

const PREFIX = 'v1.';

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('the master key must be 32 bytes');
  return {
    seal(plaintext) {
      const iv = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString('base64url');
    },
    derive(purpose) {
      return Buffer.from(crypto.hkdfSync('sha256', key, Buffer.alloc(0), `cloakroom:${purpose}`, 32));
    },
    open(sealed) {
      if (!sealed.startsWith(PREFIX)) throw new Error('not a sealed secret');
      const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64url');
      if (raw.length < 28) throw new Error('sealed secret is truncated');
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    },
  };
}

/**
 * Dev mode: without CLOAKROOM_MASTER_KEY the key lives in a file beside the embedded database,
 * created on first start with owner-only permissions.
 */
export function loadOrCreateKeyFile(dataDir: string): Buffer {
  const file = path.join(dataDir, 'master.key');
  if (fs.existsSync(file)) {
    const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new Error(`${file} does not hold a 32-byte base64 key`);
    return key;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const key = crypto.randomBytes(32);
  fs.writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  return key;
}
