// Admin REST API: Finesse provisioning on demand.
// POST /identity-provider/instances/{alias}/finesse/sync runs the provider's sync
// (src/federation/finesse/sync.ts) and answers its result. Permission manage-users, as Keycloak's
// nearest equivalent (UserStorageProviderResource's sync, which imports users); the provider's
// configuration itself stays manage-identity-providers. Answers: 404 unknown alias, 400 not a
// finesse provider / disabled / no admin credentials, 503 Finesse unreachable (every URL down,
// timed out, TLS refused), 502 Finesse answered but not usefully (refused the admin credentials,
// malformed XML); all bounded by the provider's timeouts, nothing written in those cases.
import { FinesseUnavailableError } from '../federation/finesse/client.ts';
import { finesseProviderConfig } from '../federation/finesse/config.ts';
import { FinesseSyncConfigError, syncFinesseExclusive } from '../federation/finesse/sync.ts';
import { FinesseResponseError } from '../federation/finesse/xml.ts';
import { AdminError, badRequest, notFound, ok, type AdminRouter } from './router.ts';

export function registerFinesseRoutes(admin: AdminRouter): void {
  const { store, box, logger } = admin.services;

  // changesRealm false: users, groups and roles are not cached in a realm's context (the stamp
  // written to the provider's config is read by the scheduler from the database).
  admin.realm('post', '/identity-provider/instances/:alias/finesse/sync', { permission: 'manage-users', changesRealm: false }, async (req) => {
    const row = await req.db.selectFrom('identity_providers').selectAll()
      .where('realm_id', '=', req.realm.id).where('alias', '=', req.params.alias ?? '').executeTakeFirst();
    if (!row) throw notFound('Could not find identity provider');
    if (row.provider_id !== 'finesse') throw badRequest(`Identity provider ${row.alias} is not a Finesse provider`);
    if (!row.enabled) throw badRequest(`Identity provider ${row.alias} is disabled`);
    let result;
    try {
      result = await syncFinesseExclusive(store, req.realm, finesseProviderConfig(row, box), logger);
    } catch (error) {
      if (error instanceof FinesseSyncConfigError) throw badRequest(error.message);
      if (error instanceof FinesseUnavailableError) {
        logger.warn({ err: error, realm: req.realm.name, provider: row.alias }, 'Finesse sync failed: Finesse unreachable');
        throw new AdminError(503, `Finesse sync failed: ${error.message}`);
      }
      if (error instanceof FinesseResponseError) {
        logger.warn({ err: error, realm: req.realm.name, provider: row.alias }, 'Finesse sync failed: unusable answer');
        throw new AdminError(502, `Finesse sync failed: ${error.message}`);
      }
      throw error;
    }
    req.eventRepresentation = { result };
    return ok(result);
  });
}
