// Admin REST API: partial import into an existing realm (POST /partialImport) and partial export
// (POST /partial-export), as Keycloak's RealmAdminResource and PartialImportManager do them.
import { z } from 'zod';

import { exportRealm } from '../realms/export.ts';
import {
  ImportError, RealmImport, identityProviderMapperRep, identityProviderRep, importUserRep,
  type IdentityProviderMapperRepresentation, type IdentityProviderRepresentation, type ImportUserRepresentation,
} from '../realms/import.ts';
import { clientRep, groupRep, roleRep, type ClientRepresentation, type GroupRepresentation, type RoleRepresentation } from '../realms/representation.ts';
import { parseRealmSettings } from '../realms/settings.ts';
import type { Db } from '../store/db.ts';
import type { Realm } from '../store/schema.ts';
import { AdminError, badRequest, conflict, ok, type AdminRouter } from './router.ts';

/** A partial import may carry a whole realm export with its users. */
const PARTIAL_IMPORT_BODY_LIMIT = 256 * 1024 * 1024;

const policy = z.enum(['FAIL', 'SKIP', 'OVERWRITE']);
type Policy = z.infer<typeof policy>;

/** Keycloak's PartialImportRepresentation; any other realm field in the body is ignored. */
const partialImportRep = z.object({
  ifResourceExists: policy.optional(),
  users: z.array(importUserRep).optional(),
  clients: z.array(clientRep).optional(),
  groups: z.array(groupRep).optional(),
  roles: z.object({
    realm: z.array(roleRep).optional(),
    client: z.record(z.string(), z.array(roleRep)).optional(),
  }).loose().optional(),
  identityProviders: z.array(identityProviderRep).optional(),
  identityProviderMappers: z.array(identityProviderMapperRep).optional(),
}).loose();
type PartialImportRepresentation = z.infer<typeof partialImportRep>;

type Action = 'ADDED' | 'SKIPPED' | 'OVERWRITTEN';
type ResourceType = 'USER' | 'CLIENT' | 'GROUP' | 'REALM_ROLE' | 'CLIENT_ROLE' | 'IDP' | 'IDP_MAPPER';
type Result = { action: Action; resourceType: ResourceType; resourceName: string; id: string };

/** Clients every realm has: Keycloak's partial import leaves them alone (ClientsPartialImport). */
const INTERNAL_CLIENTS = new Set(['account', 'account-console', 'admin-cli', 'broker', 'realm-management', 'security-admin-console']);
const isInternalClient = (clientId: string): boolean => INTERNAL_CLIENTS.has(clientId) || clientId.endsWith('-realm');

/** What happens to each resource of one type: decided before anything changes. */
type Plan<T> = { overwrite: T[]; skip: T[]; add: T[] };

function plan<T>(items: T[], exists: (item: T) => boolean, existsMessage: (item: T) => string, policy: Policy): Plan<T> {
  const out: Plan<T> = { overwrite: [], skip: [], add: [] };
  for (const item of items) {
    if (!exists(item)) out.add.push(item);
    else if (policy === 'SKIP') out.skip.push(item);
    else if (policy === 'OVERWRITE') out.overwrite.push(item);
    else throw conflict(existsMessage(item));
  }
  return out;
}

/** Rows of `table` among `ids` (any realm): ids a representation may not reuse. */
async function takenIds(db: Db, table: 'users' | 'groups', ids: string[]): Promise<Set<string>> {
  const taken = new Set<string>();
  const valid = ids.filter((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)).map((id) => id.toLowerCase());
  for (let start = 0; start < valid.length; start += 1000) {
    const rows = await db.selectFrom(table).select('id').where('id', 'in', valid.slice(start, start + 1000)).execute();
    for (const row of rows) taken.add(row.id);
  }
  return taken;
}

/** One partial import, inside the caller's transaction: every check first, then the writes. */
class PartialImport {
  readonly db: Db;
  readonly realm: Realm;
  readonly writer: RealmImport;
  readonly rep: PartialImportRepresentation;
  readonly policy: Policy;
  readonly results: Result[] = [];

  constructor(db: Db, realm: Realm, writer: RealmImport, rep: PartialImportRepresentation) {
    this.db = db;
    this.realm = realm;
    this.writer = writer;
    this.rep = rep;
    this.policy = rep.ifResourceExists ?? 'FAIL';
  }

  #record(action: Action, resourceType: ResourceType, resourceName: string, id: string): void {
    this.results.push({ action, resourceType, resourceName, id });
  }

  async run(): Promise<Result[]> {
    const { writer: w, rep, policy: p } = this;
    const defaultRoleName = w.defaults.defaultRole.name;

    // Keycloak's order: clients, roles, identity providers, their mappers, groups, users.
    const clients = plan((rep.clients ?? []).filter((c) => !isInternalClient(c.clientId)), (c) => w.clients.has(c.clientId),
      (c) => `Client id '${c.clientId}' already exists`, p);
    const realmRoles = plan(rep.roles?.realm ?? [], (r) => w.realmRoles.has(r.name), (r) => `Realm role '${r.name}' already exists.`, p);
    const clientRoles: Array<[string, Plan<RoleRepresentation>]> = Object.entries(rep.roles?.client ?? {}).map(([clientId, roles]) => {
      if (!w.clients.has(clientId) && !clients.add.some((c) => c.clientId === clientId)) {
        throw new AdminError(412, `Can not import client roles for nonexistent client named ${clientId}`);
      }
      return [clientId, plan(roles, (r) => w.clientRoles.get(clientId)?.has(r.name) ?? false,
        (r) => `Client role '${r.name}' for client '${clientId}' already exists.`, p)];
    });
    const idps = plan(rep.identityProviders ?? [], (i) => w.identityProviders.has(i.alias), (i) => `Identity Provider '${i.alias}' already exists.`, p);
    const existingMappers = new Map((await this.db.selectFrom('identity_provider_mappers')
      .innerJoin('identity_providers', 'identity_providers.internal_id', 'identity_provider_mappers.identity_provider_id')
      .select(['identity_provider_mappers.id', 'identity_provider_mappers.name', 'identity_providers.alias'])
      .where('identity_provider_mappers.realm_id', '=', this.realm.id).execute()).map((m) => [`${m.alias}\n${m.name}`, m.id]));
    const mapperKey = (m: IdentityProviderMapperRepresentation): string => `${m.identityProviderAlias}\n${m.name}`;
    const mappers = plan(rep.identityProviderMappers ?? [], (m) => existingMappers.has(mapperKey(m)),
      (m) => `Identity Provider Mapper'${m.name}' already exists.`, p);
    const groupPath = (g: GroupRepresentation & { path?: unknown }): string => (typeof g.path === 'string' && g.path ? g.path : `/${g.name}`);
    const groups = plan(rep.groups ?? [], (g) => w.groupPaths.has(groupPath(g)), (g) => `Group '${groupPath(g)}' already exists`, p);
    const existingUsers = await this.existingUsers(rep.users ?? []);
    const users = plan(rep.users ?? [], (u) => existingUsers.has(u), (u) => existingUsers.message(u), p);

    await this.importClients(clients);
    await this.importRoles(realmRoles, clientRoles, defaultRoleName);
    await this.importIdentityProviders(idps);
    await this.importMappers(mappers, existingMappers, mapperKey);
    await this.importGroups(groups, groupPath);
    await this.importUsers(users, existingUsers);

    // A client whose service account is on needs its service-account user (unless the body brought it).
    await w.loadExisting();
    const withAccount = new Set((await this.db.selectFrom('users').innerJoin('clients', 'clients.id', 'users.service_account_client_id')
      .select('clients.client_id').where('users.realm_id', '=', this.realm.id).execute()).map((r) => r.client_id));
    for (const client of [...clients.overwrite, ...clients.add]) {
      if (client.serviceAccountsEnabled && !withAccount.has(client.clientId)) await w.insertServiceAccount(client.clientId);
    }
    return this.results;
  }

  async importClients(clients: Plan<ClientRepresentation>): Promise<void> {
    const w = this.writer;
    const skipped = clients.skip.map((c) => w.clients.get(c.clientId)!);
    // Removing a client removes its roles, mappers and service-account user with it.
    for (const client of clients.overwrite) await this.db.deleteFrom('clients').where('id', '=', w.clients.get(client.clientId)!).execute();
    await w.loadExisting();
    // Keycloak gives imported clients and their mappers new ids.
    const create = (c: ClientRepresentation): Promise<string> =>
      w.insertClient({ ...c, id: undefined, protocolMappers: c.protocolMappers?.map((m) => ({ ...m, id: undefined })) });
    for (const client of clients.overwrite) this.#record('OVERWRITTEN', 'CLIENT', client.clientId, await create(client));
    clients.skip.forEach((client, index) => this.#record('SKIPPED', 'CLIENT', client.clientId, skipped[index]!));
    for (const client of clients.add) this.#record('ADDED', 'CLIENT', client.clientId, await create(client));
  }

  async importRoles(realmRoles: Plan<RoleRepresentation>, clientRoles: Array<[string, Plan<RoleRepresentation>]>, defaultRoleName: string): Promise<void> {
    const w = this.writer;
    // The realm's default role is every user's, so overwriting it rewrites it in place.
    const defaultRole = realmRoles.overwrite.find((r) => r.name === defaultRoleName);
    const replaced = realmRoles.overwrite.filter((r) => r !== defaultRole);
    for (const role of replaced) await this.db.deleteFrom('roles').where('id', '=', w.realmRoles.get(role.name)!).execute();
    for (const [clientId, roles] of clientRoles) {
      for (const role of roles.overwrite) {
        const id = w.clientRoles.get(clientId)?.get(role.name);
        if (id) await this.db.deleteFrom('roles').where('id', '=', id).execute();
      }
    }
    await w.loadExisting();
    const fresh = (r: RoleRepresentation): RoleRepresentation => ({ ...r, id: undefined });
    await w.insertRoles(
      [...replaced, ...realmRoles.add].map(fresh),
      Object.fromEntries(clientRoles.map(([clientId, roles]) => [clientId, [...roles.overwrite, ...roles.add].map(fresh)])),
    );
    if (defaultRole) {
      const id = w.realmRoles.get(defaultRole.name)!;
      await this.db.updateTable('roles').set({
        description: defaultRole.description ?? null, attributes: JSON.stringify(defaultRole.attributes ?? {}),
      }).where('id', '=', id).execute();
      await this.db.deleteFrom('role_composites').where('parent_id', '=', id).execute();
      await w.insertComposites([[null, defaultRole]]);
    }
    for (const role of realmRoles.overwrite) this.#record('OVERWRITTEN', 'REALM_ROLE', role.name, w.realmRoles.get(role.name)!);
    for (const role of realmRoles.skip) this.#record('SKIPPED', 'REALM_ROLE', role.name, w.realmRoles.get(role.name)!);
    for (const role of realmRoles.add) this.#record('ADDED', 'REALM_ROLE', role.name, w.realmRoles.get(role.name)!);
    // Keycloak names a client role "<clientId>--><role>" and reports the client's id.
    for (const [clientId, roles] of clientRoles) {
      const clientUuid = w.clients.get(clientId)!;
      for (const role of roles.overwrite) this.#record('OVERWRITTEN', 'CLIENT_ROLE', `${clientId}-->${role.name}`, clientUuid);
      for (const role of roles.skip) this.#record('SKIPPED', 'CLIENT_ROLE', `${clientId}-->${role.name}`, clientUuid);
      for (const role of roles.add) this.#record('ADDED', 'CLIENT_ROLE', `${clientId}-->${role.name}`, clientUuid);
    }
  }

  async importIdentityProviders(idps: Plan<IdentityProviderRepresentation>): Promise<void> {
    const w = this.writer;
    const skipped = idps.skip.map((i) => w.identityProviders.get(i.alias)!);
    for (const idp of idps.overwrite) {
      await this.db.deleteFrom('identity_providers').where('internal_id', '=', w.identityProviders.get(idp.alias)!).execute();
      w.identityProviders.delete(idp.alias);
    }
    const create = (i: IdentityProviderRepresentation): Promise<string> => w.insertIdentityProvider({ ...i, internalId: undefined });
    for (const idp of idps.overwrite) this.#record('OVERWRITTEN', 'IDP', idp.alias, await create(idp));
    idps.skip.forEach((idp, index) => this.#record('SKIPPED', 'IDP', idp.alias, skipped[index]!));
    for (const idp of idps.add) this.#record('ADDED', 'IDP', idp.alias, await create(idp));
  }

  async importMappers(mappers: Plan<IdentityProviderMapperRepresentation>, existing: Map<string, string>, key: (m: IdentityProviderMapperRepresentation) => string): Promise<void> {
    const w = this.writer;
    const create = async (m: IdentityProviderMapperRepresentation): Promise<string> => {
      // An overwritten identity provider took its mappers with it; a surviving one is replaced here.
      const old = existing.get(key(m));
      if (old) await this.db.deleteFrom('identity_provider_mappers').where('id', '=', old).execute();
      return w.insertIdentityProviderMapper({ ...m, id: undefined });
    };
    for (const mapper of mappers.overwrite) this.#record('OVERWRITTEN', 'IDP_MAPPER', mapper.name, await create(mapper));
    for (const mapper of mappers.skip) this.#record('SKIPPED', 'IDP_MAPPER', mapper.name, existing.get(key(mapper))!);
    for (const mapper of mappers.add) this.#record('ADDED', 'IDP_MAPPER', mapper.name, await create(mapper));
  }

  async importGroups(groups: Plan<GroupRepresentation>, pathOf: (g: GroupRepresentation) => string): Promise<void> {
    const w = this.writer;
    const skipped = groups.skip.map((g) => w.groupPaths.get(pathOf(g))!);
    for (const group of groups.overwrite) await this.db.deleteFrom('groups').where('id', '=', w.groupPaths.get(pathOf(group))!).execute();
    await w.loadExisting();
    // Given ids are kept (as Keycloak does) unless another group already has them.
    const all: GroupRepresentation[] = [];
    const walk = (g: GroupRepresentation): void => { all.push(g); (g.subGroups ?? []).forEach(walk); };
    [...groups.overwrite, ...groups.add].forEach(walk);
    const taken = await takenIds(this.db, 'groups', all.flatMap((g) => (g.id ? [g.id] : [])));
    const free = (g: GroupRepresentation): GroupRepresentation => ({
      ...g, id: g.id && !taken.has(g.id.toLowerCase()) ? g.id : undefined, subGroups: g.subGroups?.map(free),
    });
    const create = async (g: GroupRepresentation): Promise<string> => (await w.importGroups([free(g)], null))[0]!;
    for (const group of groups.overwrite) this.#record('OVERWRITTEN', 'GROUP', group.name, await create(group));
    groups.skip.forEach((group, index) => this.#record('SKIPPED', 'GROUP', group.name, skipped[index]!));
    for (const group of groups.add) this.#record('ADDED', 'GROUP', group.name, await create(group));
  }

  async importUsers(users: Plan<ImportUserRepresentation>, existing: ExistingUsers): Promise<void> {
    const w = this.writer;
    const overwritten = users.overwrite.map((u) => existing.idOf(u)!);
    for (let start = 0; start < overwritten.length; start += 1000) {
      await this.db.deleteFrom('users').where('id', 'in', overwritten.slice(start, start + 1000)).execute();
    }
    await w.loadExisting();
    const create = [...users.overwrite, ...users.add];
    const taken = await takenIds(this.db, 'users', create.flatMap((u) => (u.id ? [u.id] : [])));
    const ids = await w.insertUsers(create.map((u) => (u.id && taken.has(u.id.toLowerCase()) ? { ...u, id: undefined } : u)));
    users.overwrite.forEach((user, index) => this.#record('OVERWRITTEN', 'USER', user.username, ids[index]!));
    for (const user of users.skip) this.#record('SKIPPED', 'USER', user.username, existing.idOf(user)!);
    users.add.forEach((user, index) => this.#record('ADDED', 'USER', user.username, ids[users.overwrite.length + index]!));
  }

  /** Which of the given users exist: same username, or same e-mail where e-mails are unique. */
  async existingUsers(users: ImportUserRepresentation[]): Promise<ExistingUsers> {
    const uniqueEmails = !parseRealmSettings(this.realm.settings).duplicateEmailsAllowed;
    const byUsername = new Map<string, string>();
    const byEmail = new Map<string, string>();
    const names = users.map((u) => u.username.toLowerCase());
    const emails = uniqueEmails ? users.flatMap((u) => (u.email ? [u.email.toLowerCase()] : [])) : [];
    for (let start = 0; start < Math.max(names.length, emails.length); start += 1000) {
      const nameChunk = names.slice(start, start + 1000);
      const emailChunk = emails.slice(start, start + 1000);
      const rows = await this.db.selectFrom('users').select(['id', 'username', 'email']).where('realm_id', '=', this.realm.id)
        .where((eb) => eb.or([
          ...(nameChunk.length > 0 ? [eb(eb.fn('lower', ['username']), 'in', nameChunk)] : []),
          ...(emailChunk.length > 0 ? [eb(eb.fn('lower', ['email']), 'in', emailChunk)] : []),
        ])).execute();
      for (const row of rows) {
        byUsername.set(row.username.toLowerCase(), row.id);
        if (row.email) byEmail.set(row.email.toLowerCase(), row.id);
      }
    }
    const idOf = (u: ImportUserRepresentation): string | undefined =>
      byUsername.get(u.username.toLowerCase()) ?? (uniqueEmails && u.email ? byEmail.get(u.email.toLowerCase()) : undefined);
    return {
      has: (u) => idOf(u) !== undefined,
      idOf,
      // Keycloak's wording (UsersPartialImport.existsMessage), condition included.
      message: (u) => (!u.email || uniqueEmails
        ? `User with user name ${u.username} already exists.`
        : `User with user name ${u.username} or with email ${u.email} already exists.`),
    };
  }
}

type ExistingUsers = {
  has(user: ImportUserRepresentation): boolean;
  idOf(user: ImportUserRepresentation): string | undefined;
  message(user: ImportUserRepresentation): string;
};

export function registerRealmTransferRoutes(admin: AdminRouter): void {
  // Keycloak requires manage-realm only (RealmAdminResource.partialImport), users included.
  admin.realm('post', '/partialImport', { permission: 'manage-realm', bodyLimit: PARTIAL_IMPORT_BODY_LIMIT, secretBody: true }, async (req) => {
    const rep = await req.json(partialImportRep);
    let results: Result[];
    try {
      // One transaction: a conflict or a bad reference leaves the realm as it was.
      results = await req.db.transaction().execute(async (trx) => {
        const writer = await RealmImport.forExisting(trx, req.services.box, req.realm.id);
        return new PartialImport(trx, req.realm, writer, rep).run();
      });
    } catch (error) {
      if (error instanceof ImportError) throw badRequest(error.message);
      throw error;
    }
    const count = (action: Action): number => results.filter((r) => r.action === action).length;
    return ok({ overwritten: count('OVERWRITTEN'), added: count('ADDED'), skipped: count('SKIPPED'), results });
  });

  // Keycloak 26 requires manage-realm, plus query-groups for groups and roles and view-clients
  // for clients; secrets come out masked, users only as the clients' service accounts.
  admin.realm('post', '/partial-export', { permission: 'manage-realm', changesRealm: false }, async (req) => {
    const clients = req.bool('exportClients') === true;
    const groupsAndRoles = req.bool('exportGroupsAndRoles') === true;
    if (groupsAndRoles) req.auth.require(req.realmRef, 'query-groups');
    if (clients) req.auth.require(req.realmRef, 'view-clients');
    return ok(await exportRealm(req.db, req.services.box, req.realm.name, {
      users: false, secrets: 'masked', clients, groupsAndRoles, serviceAccounts: clients,
    }));
  });
}
