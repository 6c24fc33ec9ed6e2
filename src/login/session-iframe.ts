// The pages keycloak-js loads in hidden iframes, served as Keycloak serves them:
// - 3p-cookies/step1.html + step2.html: can this browser use cookies of the server inside a frame?
// - login-status-iframe.html: OpenID Connect Session Management; answers the app's
//   "clientId sid" messages with unchanged/changed by comparing the sid with the KEYCLOAK_SESSION
//   cookie (realm/userId/sid, readable by script, set when a login or SSO returns a code).
//   login-status-iframe.html/init checks the app's origin against the client's webOrigins.
import type { Context } from 'koa';

import { clientAllowsOrigin } from '../oidc/client-policy.ts';
import type { RealmContext } from '../realms/context.ts';

export const SESSION_COOKIE = 'KEYCLOAK_SESSION';

const STEP1 = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>3rd party cookie check</title></head><body><script>
document.cookie = "KEYCLOAK_3P_COOKIE_SAMESITE=supported; Max-Age=60; SameSite=None; Secure";
document.cookie = "KEYCLOAK_3P_COOKIE=supported; Max-Age=60";
window.location = "step2.html";
</script></body></html>`;

const STEP2 = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>3rd party cookie check</title></head><body><script>
var supported = document.cookie.indexOf("KEYCLOAK_3P_COOKIE") !== -1;
document.cookie = "KEYCLOAK_3P_COOKIE_SAMESITE=; Max-Age=0; SameSite=None; Secure";
document.cookie = "KEYCLOAK_3P_COOKIE=; Max-Age=0";
window.parent.postMessage(supported ? "supported" : "unsupported", "*");
</script></body></html>`;

const LOGIN_STATUS = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Login status</title></head><body><script>
var verified = {};
function sessionCookieSid() {
  var prefix = "${SESSION_COOKIE}=";
  var parts = document.cookie.split("; ");
  for (var i = 0; i < parts.length; i++) {
    if (parts[i].indexOf(prefix) === 0) return decodeURIComponent(parts[i].substring(prefix.length)).split("/")[2] || "";
  }
  return "";
}
window.addEventListener("message", function (event) {
  if (typeof event.data !== "string") return;
  var parts = event.data.split(" ");
  if (parts.length !== 2) return;
  var clientId = parts[0], sessionState = parts[1], origin = event.origin, source = event.source;
  function answer() {
    var sid = sessionCookieSid();
    source.postMessage(sid !== "" && sid === sessionState ? "unchanged" : "changed", origin);
  }
  var key = clientId + " " + origin;
  if (verified[key]) return answer();
  fetch("login-status-iframe.html/init?client_id=" + encodeURIComponent(clientId) + "&origin=" + encodeURIComponent(origin), { credentials: "same-origin" })
    .then(function (response) {
      if (response.status === 204) { verified[key] = true; answer(); } else { source.postMessage("error", origin); }
    }, function () { source.postMessage("error", origin); });
});
</script></body></html>`;

const PAGES: Record<string, string> = {
  '/protocol/openid-connect/3p-cookies/step1.html': STEP1,
  '/protocol/openid-connect/3p-cookies/step2.html': STEP2,
  '/protocol/openid-connect/login-status-iframe.html': LOGIN_STATUS,
};

export function isSessionIframeRoute(rest: string): boolean {
  return rest in PAGES || rest === '/protocol/openid-connect/login-status-iframe.html/init';
}

/** Serves the iframe pages (framable by any app: they reveal nothing but "changed"). */
export async function serveSessionIframe(ctx: Context, realm: RealmContext, rest: string): Promise<void> {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    ctx.status = 405;
    ctx.body = { error: 'invalid_request', error_description: `${ctx.method} is not allowed here` };
    return;
  }
  if (rest.endsWith('/init')) {
    const clientId = typeof ctx.query.client_id === 'string' ? ctx.query.client_id : '';
    const origin = typeof ctx.query.origin === 'string' ? ctx.query.origin : '';
    const client = clientId ? await realm.client(clientId) : undefined;
    ctx.status = client && origin && clientAllowsOrigin(client, origin) ? 204 : 403;
    ctx.set('Cache-Control', 'no-store');
    return;
  }
  ctx.type = 'html';
  ctx.set('Content-Security-Policy', "default-src 'none'; script-src 'unsafe-inline'; connect-src 'self'");
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Cache-Control', 'no-cache');
  ctx.body = PAGES[rest];
}
