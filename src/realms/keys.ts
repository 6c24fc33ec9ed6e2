// A realm's signing keys: created with the realm, sealed at rest, rotated on demand with the
// previous key kept published until every token it signed has expired.
import type { JWK } from 'jose';

import type { SecretBox } from '../crypto/secret-box.ts';
import { generateSigningKey, type SigningAlg } from '../crypto/signing-keys.ts';
import type { Db } from '../store/db.ts';
import { demoteActiveKeys, insertKey, listPublishedKeys } from '../store/keys.ts';

export type RealmKeys = {
  /** Private JWKs for oidc-provider, active keys first (it signs with the first that fits). */
  signing: JWK[];
  /** Public JWKs, as published at the certs endpoint. */
  published: JWK[];
};

export async function createRealmKey(db: Db, box: SecretBox, realmId: string, alg: SigningAlg): Promise<string> {
  const key = await generateSigningKey(alg);
  await insertKey(db, {
    kid: key.kid, realm_id: realmId, alg, public_jwk: JSON.stringify(key.publicJwk),
    private_jwk_sealed: box.seal(JSON.stringify(key.privateJwk)), status: 'active', retire_at: null,
  });
  return key.kid;
}

export async function loadRealmKeys(db: Db, box: SecretBox, realmId: string): Promise<RealmKeys> {
  const rows = await listPublishedKeys(db, realmId);
  return {
    signing: rows.map((row) => JSON.parse(box.open(row.private_jwk_sealed)) as JWK),
    published: rows.map((row) => row.public_jwk as JWK),
  };
}

/**
 * New active key for `alg`; the old one turns passive and stays published for `publishSeconds`
 * (the longest lifetime of a token it may have signed).
 */
export async function rotateRealmKey(db: Db, box: SecretBox, realmId: string, alg: SigningAlg, publishSeconds: number): Promise<{ kid: string; demoted: number }> {
  return db.transaction().execute(async (trx) => {
    const demoted = await demoteActiveKeys(trx, realmId, alg, new Date(Date.now() + publishSeconds * 1000));
    const kid = await createRealmKey(trx, box, realmId, alg);
    return { kid, demoted };
  });
}
