// Password changes of LDAP-federated users, as Keycloak's LDAPStorageProvider.updateCredential
// does them per edit mode: READ_ONLY refuses ("Federated storage is not writable"), UNSYNCED
// leaves LDAP alone (the caller stores a local hash, which then decides that user's logins), and
// WRITABLE writes the password to the user's entry as the service account:
//   - Active Directory (vendor ad): replace unicodePwd with the password in double quotes, UTF-16LE
//     (LDAPIdentityStore.updateADPassword). AD accepts that only on an encrypted connection; a
//     provider that would send it in clear text is refused here with AD's own answer (53).
//   - others: the Password Modify extended operation (RFC 3062) when usePasswordModifyExtendedOp,
//     else a replace of userPassword (the directory hashes it, or its policy does).
// With the msad-user-account-control-mapper (MSADUserAccountControlStorageMapper, the provider's
// PasswordUpdateCallback): the new password clears AD's "must change" state (pwdLastSet -1, and
// PASSWD_NOTREQD, PASSWORD_EXPIRED and, for enabled users, ACCOUNTDISABLE removed from
// userAccountControl), or sets pwdLastSet 0 when the new password is temporary; a user's own
// change may carry AD's password-policy-hints control (ldap.password.policy.hints.enabled); and
// AD's "password does not meet the policy" (LDAP 19/53 with 0000052D) becomes Keycloak's
// invalidPasswordGenericMessage.
import { Ber, BerWriter, Attribute, Change, Control, ResultCodeError } from 'ldapts';

import type { SecretBox } from '../../crypto/secret-box.ts';
import type { Db } from '../../store/db.ts';
import type { User } from '../../store/schema.ts';
import { withLdap } from './client.ts';
import { USER_STORAGE_PROVIDER_TYPE, loadLdapProviders } from './config.ts';
import { firstValue } from './directory.ts';
import { ldapEntryOfUser } from './login.ts';
import { LdapUnavailableError, type LdapEntry, type LdapProviderConfig } from './types.ts';

/** RFC 3062 Password Modify extended operation. */
export const PASSWORD_MODIFY_OID = '1.3.6.1.4.1.4203.1.11.1';
/** LDAP_SERVER_POLICY_HINTS_DEPRECATED_OID: Keycloak sends this one (works from AD 2008 R2 on). */
const POLICY_HINTS_OID = '1.2.840.113556.1.4.2066';
/** Keycloak's control value: SEQUENCE { INTEGER 1 } with a 4-byte length. */
const POLICY_HINTS_VALUE = Buffer.from([0x30, 0x84, 0, 0, 0, 3, 0x02, 0x01, 0x01]);

/** userAccountControl flags touched after a password update. */
const ACCOUNTDISABLE = 0x0002;
const PASSWD_NOTREQD = 0x0020;
const PASSWORD_EXPIRED = 0x800000;

const MSAD_MAPPER = 'msad-user-account-control-mapper';

/** ReadOnlyException's message in LDAPStorageProvider.updateCredential. */
export const READ_ONLY_MESSAGE = 'Federated storage is not writable';

export type LdapPasswordFailure =
  /** The provider is READ_ONLY. */
  | 'read-only'
  /** The directory refused the new password (constraint violation, policy, access rights...). */
  | 'rejected'
  /** The user's entry is no longer in the directory. */
  | 'entry-missing'
  /** The user's provider is disabled. */
  | 'provider-disabled';

/** A password change the user's LDAP provider refused; `message` says why, with the server's words when it answered. */
export class LdapPasswordError extends Error {
  readonly kind: LdapPasswordFailure;
  readonly providerId: string;
  /** What Keycloak's ModelException says here (the `error` of its admin answer). */
  readonly keycloakMessage: string;
  /** Keycloak's message key when it has one (AD's 0000052D: invalidPasswordGenericMessage). */
  readonly messageKey: string | undefined;
  /** LDAP result code of a refusal. */
  readonly resultCode: number | undefined;
  constructor(kind: LdapPasswordFailure, providerId: string, message: string, details: { keycloakMessage: string; messageKey?: string; resultCode?: number; cause?: unknown }) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = kind;
    this.providerId = providerId;
    this.keycloakMessage = details.keycloakMessage;
    this.messageKey = details.messageKey;
    this.resultCode = details.resultCode;
  }
}

export type LdapPasswordOptions = {
  /** An administrator sets the password (Keycloak's isAdminRequest): AD's policy hints are not asked for. */
  adminRequest?: boolean;
  /** A temporary password: with the msad mapper, pwdLastSet 0 (must change at the next login) instead of -1. */
  mustChange?: boolean;
};

/** The user's LDAP provider: its config, 'disabled' for a disabled LDAP provider, undefined when the link names none. */
export async function ldapProviderOfUser(db: Db, box: SecretBox, realmId: string, federationLink: string | null): Promise<LdapProviderConfig | 'disabled' | undefined> {
  if (federationLink === null) return undefined;
  const provider = (await loadLdapProviders(db, box, realmId)).find((p) => p.id === federationLink);
  if (provider) return provider;
  if (!/^[0-9a-f-]{36}$/i.test(federationLink)) return undefined;
  const component = await db.selectFrom('components').select('id').where('realm_id', '=', realmId).where('id', '=', federationLink)
    .where('provider_type', '=', USER_STORAGE_PROVIDER_TYPE).where('provider_id', '=', 'ldap').executeTakeFirst();
  return component ? 'disabled' : undefined;
}

/** The refusal of a READ_ONLY provider (Keycloak's ReadOnlyException). */
export function ldapReadOnlyError(config: Pick<LdapProviderConfig, 'id' | 'name'>): LdapPasswordError {
  return new LdapPasswordError('read-only', config.id, `${READ_ONLY_MESSAGE}: LDAP provider "${config.name}" is read-only`, { keycloakMessage: READ_ONLY_MESSAGE });
}

/** AD takes unicodePwd only over TLS: every URL is ldaps://, or StartTLS is on. */
function encrypted(config: LdapProviderConfig): boolean {
  return config.startTls || (config.connectionUrls.length > 0 && config.connectionUrls.every((url) => /^ldaps:\/\//i.test(url)));
}

/** AD's unicodePwd value: the password in double quotes, UTF-16LE. */
export function adUnicodePwd(password: string): Buffer {
  return Buffer.from(`"${password}"`, 'utf16le');
}

/** PasswdModifyRequestValue ::= SEQUENCE { userIdentity [0] OCTET STRING, newPasswd [2] OCTET STRING } (no oldPasswd, as Keycloak). */
export function passwordModifyRequestValue(dn: string, password: string): Buffer {
  const writer = new BerWriter();
  writer.startSequence();
  writer.writeBuffer(Buffer.from(dn, 'utf8'), Ber.Context | 0);
  writer.writeBuffer(Buffer.from(password, 'utf8'), Ber.Context | 2);
  writer.endSequence();
  return writer.buffer;
}

/** AD's LDAP_SERVER_POLICY_HINTS control (critical), as Keycloak's LDAPServerPolicyHintsDecorator. */
class PolicyHintsControl extends Control {
  constructor() {
    super(POLICY_HINTS_OID, { critical: true });
  }

  protected override writeControl(writer: BerWriter): void {
    writer.writeBuffer(POLICY_HINTS_VALUE, Ber.OctetString);
  }
}

/** The server's diagnostic message of a refusal (ldapts appends " Code: 0x..."). */
function diagnostic(error: ResultCodeError): string {
  return error.message.replace(/\s*Code: 0x[0-9a-f]+$/i, '').trim() || error.name;
}

/** MSADUserAccountControlStorageMapper.processFailedPasswordUpdateException: LDAP 19 or 53 with AD's 0000052D. */
function adPolicyRefusal(error: ResultCodeError): boolean {
  const adCode = /^([0-9A-F]+):/i.exec(diagnostic(error))?.[1]?.toUpperCase();
  return (error.code === 19 || error.code === 53) && adCode !== undefined && adCode.endsWith('52D');
}

async function userEntry(config: LdapProviderConfig, user: Pick<User, 'username' | 'attributes'>): Promise<LdapEntry | undefined> {
  try {
    return await ldapEntryOfUser(config, user);
  } catch (error) {
    if (error instanceof ResultCodeError) {
      throw new LdapUnavailableError(config.id, `LDAP provider "${config.name}" answered the user search with an error: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/**
 * Writes a new password to a WRITABLE provider's entry of `user` (found at its LDAP_ENTRY_DN, else
 * by LDAP_ID / username). READ_ONLY throws LdapPasswordError 'read-only'; UNSYNCED writes nothing
 * (the local hash is the caller's). The directory unreachable: LdapUnavailableError; a refusal:
 * LdapPasswordError 'rejected' with the server's message.
 */
export async function updateLdapPassword(
  config: LdapProviderConfig, user: Pick<User, 'username' | 'attributes' | 'enabled'>, newPassword: string, options: LdapPasswordOptions = {},
): Promise<void> {
  if (config.editMode === 'READ_ONLY') throw ldapReadOnlyError(config);
  if (config.editMode !== 'WRITABLE') return;

  const entry = await userEntry(config, user);
  if (!entry) {
    throw new LdapPasswordError('entry-missing', config.id, `the LDAP entry of user "${user.username}" was not found in LDAP provider "${config.name}"`, {
      keycloakMessage: `User '${user.username}' can't be updated in LDAP as it doesn't exist there`,
    });
  }
  const ad = config.vendor === 'ad';
  const msad = config.mappers.find((m) => m.providerId === MSAD_MAPPER);
  const writeMessage = ad || !config.usePasswordModifyExtendedOp
    ? `Could not modify attribute for DN [${entry.dn}]`
    : `Could not execute the password modify extended operation for DN [${entry.dn}]`;
  if (ad && !encrypted(config)) {
    // What AD answers (53, 0000001F ... WILL_NOT_PERFORM); nothing is sent in clear text.
    throw new LdapPasswordError('rejected', config.id,
      `Active Directory changes passwords only over an encrypted connection: LDAP provider "${config.name}" needs an ldaps:// URL or StartTLS`,
      { keycloakMessage: writeMessage, resultCode: 53 });
  }
  const hints = msad?.config['ldap.password.policy.hints.enabled'] === 'true' && !options.adminRequest ? [new PolicyHintsControl()] : [];

  try {
    await withLdap(config, async (client) => {
      if (ad) {
        await client.modify(entry.dn, new Change({ operation: 'replace', modification: new Attribute({ type: 'unicodePwd', values: [adUnicodePwd(newPassword)] }) }), hints);
      } else if (config.usePasswordModifyExtendedOp) {
        await client.exop(PASSWORD_MODIFY_OID, passwordModifyRequestValue(entry.dn, newPassword), hints);
      } else {
        await client.modify(entry.dn, new Change({ operation: 'replace', modification: new Attribute({ type: 'userPassword', values: [newPassword] }) }), hints);
      }
    });
  } catch (error) {
    if (!(error instanceof ResultCodeError)) throw error;
    if (msad && adPolicyRefusal(error)) {
      throw new LdapPasswordError('rejected', config.id, `the LDAP directory refused the new password: ${diagnostic(error)}`, {
        keycloakMessage: 'invalidPasswordGenericMessage', messageKey: 'invalidPasswordGenericMessage', resultCode: error.code, cause: error,
      });
    }
    throw new LdapPasswordError('rejected', config.id, `the LDAP directory refused the new password: ${diagnostic(error)} (LDAP result ${error.code})`, {
      keycloakMessage: writeMessage, resultCode: error.code, cause: error,
    });
  }

  if (msad) await passwordUpdated(config, entry, user, options.mustChange === true);
}

/** MSADUserAccountControlStorageMapper.passwordUpdated (and addRequiredAction for a temporary password). */
async function passwordUpdated(config: LdapProviderConfig, entry: LdapEntry, user: Pick<User, 'enabled'>, mustChange: boolean): Promise<void> {
  const changes = [new Change({ operation: 'replace', modification: new Attribute({ type: 'pwdLastSet', values: [mustChange ? '0' : '-1'] }) })];
  const current = firstValue(entry, 'userAccountControl');
  if (current !== undefined && /^\d+$/.test(current)) {
    let control = Number.parseInt(current, 10) & ~PASSWD_NOTREQD & ~PASSWORD_EXPIRED;
    if (user.enabled) control &= ~ACCOUNTDISABLE;
    changes.push(new Change({ operation: 'replace', modification: new Attribute({ type: 'userAccountControl', values: [String(control >>> 0)] }) }));
  }
  try {
    await withLdap(config, (client) => client.modify(entry.dn, changes));
  } catch (error) {
    if (!(error instanceof ResultCodeError)) throw error;
    // The password is set; only AD's bookkeeping failed. Keycloak's update fails the request the same way.
    throw new LdapPasswordError('rejected', config.id, `the new password was set, but the LDAP directory refused to update pwdLastSet/userAccountControl: ${diagnostic(error)} (LDAP result ${error.code})`, {
      keycloakMessage: `Could not modify attribute for DN [${entry.dn}]`, resultCode: error.code, cause: error,
    });
  }
}
