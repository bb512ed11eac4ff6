// A real OpenID Provider for Taskgate's identity tests (crates/taskgate/tests/idp.rs):
// oidc-provider on 127.0.0.1:<port>, with a public CLI client using the device
// flow (and refresh tokens), a confidential client using client credentials,
// and the web console's public client (authorization code with PKCE).
// Access tokens are JWTs for audience "taskgate" carrying the account's groups.
// Any login is accepted (devInteractions): the test plays the browser.
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;
// A fresh signing key (and key id) each start: restarting the provider on the
// same port is a key rotation.
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signing = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };

const configuration = {
  jwks: { keys: [signing] },
  clients: [
    { client_id: 'taskgate-cli', token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [], redirect_uris: [] },
    { client_id: 'taskgate-agent', client_secret: 'agent-secret',
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
    // The web console: a public client with PKCE, sent back to the gateway
    // on loopback (any port, as RFC 8252 allows native clients).
    { client_id: 'taskgate-console', token_endpoint_auth_method: 'none', application_type: 'native',
      grant_types: ['authorization_code'], response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/ui/callback'] },
  ],
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:taskgate:api',
      getResourceServerInfo: () => ({
        scope: 'openid offline_access groups',
        audience: 'taskgate',
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'RS256' } },
      }),
      useGrantedResource: () => true,
    },
  },
  scopes: ['openid', 'offline_access', 'groups'],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  extraTokenClaims: async (ctx, token) => token.accountId ? { groups: ['dba'], email: `${token.accountId}@acme.example` } : { groups: ['agents'] },
  issueRefreshToken: () => true,
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access groups');
    grant.addResourceScope('urn:taskgate:api', 'openid offline_access groups');
    await grant.save();
    return grant;
  },
};
const provider = new Provider(issuer, configuration);
provider.proxy = false;
const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer} ${signing.kid}`);
});
