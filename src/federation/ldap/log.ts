// The logger of LDAP federation's warnings (skipped mappers, import conflicts, missing roles and
// groups): the server's once it calls setLdapLogger, until then one made from the environment.
// The login path has no logger at hand, and these warnings must not be lost.
import { createLogger, type Logger } from '../../observability/logger.ts';

type WarnLogger = Pick<Logger, 'warn'>;

let logger: WarnLogger | undefined;

export function setLdapLogger(next: WarnLogger): void {
  logger = next;
}

export function ldapLog(): WarnLogger {
  logger ??= createLogger(process.env.CLOAKROOM_LOG_LEVEL || process.env.KC_LOG_LEVEL || 'info');
  return logger;
}
