// ClickCall's flows driven by panva's oauth4webapi, a strict third-party client.
//
//   node flows.mjs <flow> < config.json      (or: node flows.mjs <flow> '<config json>')
//
// Prints one JSON object (what the client saw and validated) and exits 0; on any failure
// prints {"error": ...} and exits 1. tests/e2e/test_oauth4webapi.py runs every flow against
// the real servers (gunicorn) and asserts on the output.
//
// Every protocol step goes through oauth4webapi's own functions (discovery, authorization
// response validation, token requests and responses with their ID token checks, userinfo,
// registration, device flow, PAR, DPoP, client authentication, revocation, introspection,
// RFC 9068 access token validation). Only the user's part (the login form and the consent
// page, which no client library does) is plain fetch with a cookie jar, below.
//
// The servers listen on loopback http: oauth4webapi refuses http:// unless each call passes
// its `allowInsecureRequests` option, which every call here does (OPTS).

import * as oauth from 'oauth4webapi'

const OPTS = { [oauth.allowInsecureRequests]: true }

// --- the user's part: a browser with a cookie jar, speaking the pages' JSON ----------------

class Browser {
  constructor(user) {
    this.user = user
    this.cookies = new Map()
  }

  headers(extra = {}) {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    return { accept: 'application/json', ...(cookie ? { cookie } : {}), ...extra }
  }

  async fetch(url, init = {}) {
    const response = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: this.headers(init.headers),
      signal: AbortSignal.timeout(10_000),
    })
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const at = pair.indexOf('=')
      this.cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim())
    }
    return response
  }

  async post(url, fields) {
    return this.fetch(url, {
      method: 'POST',
      body: new URLSearchParams(fields),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    })
  }

  // Follow the authorization request through sign-in and consent until the server
  // redirects to `redirectUri`; return that callback URL. The login and grant pages keep
  // the authorization request in their query, so each form posts back to its own URL.
  async authorize(authorizationUrl, redirectUri, seen = []) {
    let url = new URL(authorizationUrl)
    let response = await this.fetch(url)
    for (let step = 0; step < 10; step++) {
      if (response.status >= 300 && response.status < 400) {
        const next = new URL(response.headers.get('location'), url)
        seen.push(next.pathname)
        if (next.href.startsWith(redirectUri)) return next
        url = next
        response = await this.fetch(url)
        continue
      }
      const body = await response.json().catch(() => ({}))
      if (response.status !== 200) {
        throw new Error(`${url.pathname} answered ${response.status}: ${JSON.stringify(body)}`)
      }
      if (url.pathname === '/auth/login') {
        response = await this.post(url, {
          username: this.user.username,
          password: this.user.password,
          csrf_token: body.csrf_token,
        })
      } else if (url.pathname === '/auth/grant') {
        response = await this.post(url, { grant: 'true', csrf_token: body.csrf_token })
      } else {
        throw new Error(`unexpected page ${url.href}: ${JSON.stringify(body)}`)
      }
    }
    throw new Error('too many redirects')
  }
}

// --- helpers ---------------------------------------------------------------------------

async function discover(issuer, algorithm = 'oauth2') {
  const url = new URL(issuer)
  return oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { ...OPTS, algorithm }))
}

function b64uJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString())
}

function jwtParts(token) {
  const [header, payload] = token.split('.')
  return { header: b64uJson(header), claims: b64uJson(payload) }
}

const ALGS = {
  RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  PS256: { name: 'RSA-PSS', hash: 'SHA-256', saltLength: 32 },
  ES256: { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
}

// oauth4webapi validates the claims of an ID token from the token endpoint but, as OpenID
// Connect Core §3.1.3.7 allows over TLS, not its signature: check it against jwks_uri too,
// and the at_hash (§3.1.3.8) it does not look at either.
async function checkIdTokenSignatureAndAtHash(as, idToken, accessToken) {
  const { header, claims } = jwtParts(idToken)
  const jwks = await (await fetch(as.jwks_uri)).json()
  const jwk = jwks.keys.find((k) => k.kid === header.kid)
  if (!jwk) throw new Error(`ID token kid ${header.kid} not in jwks_uri`)
  const alg = ALGS[header.alg]
  if (!alg) throw new Error(`unexpected ID token alg ${header.alg}`)
  const key = await crypto.subtle.importKey('jwk', jwk, alg, false, ['verify'])
  const [h, p, s] = idToken.split('.')
  const signature = Buffer.from(s, 'base64url')
  const ok = await crypto.subtle.verify(alg, key, signature, Buffer.from(`${h}.${p}`))
  if (!ok) throw new Error('ID token signature does not verify against jwks_uri')
  if (claims.at_hash !== undefined) {
    const digest = Buffer.from(await crypto.subtle.digest('SHA-256', Buffer.from(accessToken)))
    const expected = digest.subarray(0, 16).toString('base64url')
    if (claims.at_hash !== expected) throw new Error('ID token at_hash does not match')
  }
  return { alg: header.alg, kid: header.kid, at_hash_checked: claims.at_hash !== undefined }
}

// RFC 9068 validation of an access token by oauth4webapi (signature via jwks_uri, typ
// at+jwt, iss, aud, exp, iat, jti, sub, client_id; with DPoP: cnf.jkt and the proof).
async function validateAccessToken(as, cfg, accessToken, dpop) {
  const url = new URL(`${cfg.call_api}/rest/call`)
  const headers = new Headers({ authorization: `${dpop ? 'DPoP' : 'Bearer'} ${accessToken}` })
  if (dpop) await dpop.addProof(url, headers, 'GET', accessToken)
  const request = new Request(url, { headers })
  return oauth.validateJwtAccessToken(as, request, cfg.audience, OPTS)
}

function tokenSummary(tokens) {
  return {
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_in: tokens.expires_in,
    has_refresh_token: typeof tokens.refresh_token === 'string',
    has_id_token: typeof tokens.id_token === 'string',
  }
}

async function callApi(accessToken, method, path, body, dpop) {
  const headers = new Headers({ accept: 'application/json' })
  if (body !== undefined) headers.set('content-type', 'application/json')
  const response = await oauth.protectedResourceRequest(
    accessToken,
    method,
    new URL(path),
    headers,
    body === undefined ? null : JSON.stringify(body),
    { ...OPTS, ...(dpop ? { DPoP: dpop } : {}) },
  )
  return { status: response.status, body: await response.json() }
}

// A request that may be answered use_dpop_nonce once (RFC 9449 §8, §9): retry with the
// nonce oauth4webapi's DPoP handle has remembered from that answer. `nonceRetries` names
// the requests that were retried.
const nonceRetries = []
async function withDPoPNonce(label, attempt) {
  try {
    return await attempt()
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    nonceRetries.push(label)
    return attempt()
  }
}

// The authorization code flow with PKCE and state (and nonce with openid), through the
// user's sign-in and consent; returns the token response and what was checked on the way.
async function codeFlow(as, cfg, client, clientAuth, options = {}) {
  const codeVerifier = oauth.generateRandomCodeVerifier()
  const state = oauth.generateRandomState()
  const scope = options.scope ?? 'call'
  const openid = scope.split(' ').includes('openid')
  const nonce = openid ? oauth.generateRandomNonce() : undefined
  const params = {
    client_id: client.client_id,
    redirect_uri: cfg.redirect_uri,
    response_type: 'code',
    scope,
    state,
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    ...(nonce ? { nonce } : {}),
    ...(options.dpop ? { dpop_jkt: await options.dpop.calculateThumbprint() } : {}),
  }
  const authorizationUrl = new URL(as.authorization_endpoint)
  let par
  if (options.par) {
    // RFC 9126: the whole request is pushed, the browser carries only client_id and request_uri.
    const response = await withDPoPNonce('par', async () =>
      oauth.processPushedAuthorizationResponse(
        as,
        client,
        await oauth.pushedAuthorizationRequest(as, client, clientAuth, params, {
          ...OPTS,
          ...(options.dpop ? { DPoP: options.dpop } : {}),
        }),
      ),
    )
    par = { request_uri: response.request_uri, expires_in: response.expires_in }
    authorizationUrl.searchParams.set('client_id', client.client_id)
    authorizationUrl.searchParams.set('request_uri', response.request_uri)
  } else {
    for (const [k, v] of Object.entries(params)) authorizationUrl.searchParams.set(k, v)
  }

  const browser = options.browser ?? new Browser(cfg.user)
  const pages = []
  const callback = await browser.authorize(authorizationUrl, cfg.redirect_uri, pages)
  // State, iss (RFC 9207, required when the metadata says so), error responses.
  const callbackParams = oauth.validateAuthResponse(as, client, callback, state)

  const dpopOpts = options.dpop ? { DPoP: options.dpop } : {}
  const tokens = await withDPoPNonce('token', async () =>
    oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(
        as,
        client,
        clientAuth,
        callbackParams,
        cfg.redirect_uri,
        codeVerifier,
        { ...OPTS, ...dpopOpts },
      ),
      openid ? { expectedNonce: nonce, requireIdToken: true } : {},
    ),
  )
  const result = {
    pages,
    callback_params: [...new Set(callback.searchParams.keys())].sort(),
    callback_iss: callback.searchParams.get('iss'),
    par,
    tokens,
  }
  if (openid) {
    const claims = oauth.getValidatedIdTokenClaims(tokens)
    result.id_token_claims = claims
    result.id_token_nonce_matches = claims.nonce === nonce
    result.id_token = await checkIdTokenSignatureAndAtHash(as, tokens.id_token, tokens.access_token)
  }
  return result
}

async function refresh(as, client, clientAuth, refreshToken, dpop) {
  return withDPoPNonce('refresh', async () =>
    oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, clientAuth, refreshToken, {
        ...OPTS,
        ...(dpop ? { DPoP: dpop } : {}),
      }),
    ),
  )
}

function secretAuth(client) {
  if (!client.client_secret) return oauth.None()
  return client.token_endpoint_auth_method === 'client_secret_post'
    ? oauth.ClientSecretPost(client.client_secret)
    : oauth.ClientSecretBasic(client.client_secret)
}

async function introspect(as, client, clientAuth, token) {
  return oauth.processIntrospectionResponse(
    as,
    client,
    await oauth.introspectionRequest(as, client, clientAuth, token, OPTS),
  )
}

async function revoke(as, client, clientAuth, token, hint) {
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, clientAuth, token, {
      ...OPTS,
      ...(hint ? { additionalParameters: { token_type_hint: hint } } : {}),
    }),
  )
}

function clientOf(info) {
  const { client_secret, ...client } = info
  return client
}

async function register(as, cfg, metadata) {
  const response = await oauth.dynamicClientRegistrationRequest(as, metadata, {
    ...OPTS,
    initialAccessToken: cfg.initial_access_token,
  })
  return oauth.processDynamicClientRegistrationResponse(response)
}

// --- the flows -------------------------------------------------------------------------

const flows = {
  // RFC 8414 and OpenID Connect Discovery: oauth4webapi checks that the document's issuer
  // is the one asked for.
  async discovery(cfg) {
    return { oauth: await discover(cfg.issuer, 'oauth2'), oidc: await discover(cfg.issuer, 'oidc') }
  },

  // Code + PKCE + state, the access token validated (RFC 9068), the call API, a refresh.
  async code(cfg) {
    const as = await discover(cfg.issuer)
    const client = clientOf(cfg.client)
    const auth = secretAuth(cfg.client)
    const flow = await codeFlow(as, cfg, client, auth)
    const claims = await validateAccessToken(as, cfg, flow.tokens.access_token)
    const api = await callApi(flow.tokens.access_token, 'GET', `${cfg.call_api}/rest/call`)
    const refreshed = await refresh(as, client, auth, flow.tokens.refresh_token)
    const refreshedClaims = await validateAccessToken(as, cfg, refreshed.access_token)
    return {
      pages: flow.pages,
      callback_params: flow.callback_params,
      callback_iss: flow.callback_iss,
      tokens: tokenSummary(flow.tokens),
      access_token_claims: claims,
      call_api: api,
      refreshed: tokenSummary(refreshed),
      refresh_token_rotated: refreshed.refresh_token !== flow.tokens.refresh_token,
      refreshed_claims: refreshedClaims,
    }
  },

  // OpenID Connect: nonce, ID token (iss, aud, exp, iat, sub, nonce by oauth4webapi;
  // signature and at_hash here), RFC 9207 iss, userinfo with the subject checked.
  async oidc(cfg) {
    const as = await discover(cfg.issuer, 'oidc')
    const client = clientOf(cfg.client)
    const auth = secretAuth(cfg.client)
    const flow = await codeFlow(as, cfg, client, auth, { scope: cfg.scope })
    const sub = flow.id_token_claims.sub
    const userinfo = await oauth.processUserInfoResponse(
      as,
      client,
      sub,
      await oauth.userInfoRequest(as, client, flow.tokens.access_token, OPTS),
    )
    const refreshed = await refresh(as, client, auth, flow.tokens.refresh_token)
    return {
      pages: flow.pages,
      callback_params: flow.callback_params,
      callback_iss: flow.callback_iss,
      iss_parameter_supported: as.authorization_response_iss_parameter_supported ?? false,
      tokens: tokenSummary(flow.tokens),
      id_token_claims: flow.id_token_claims,
      id_token_nonce_matches: flow.id_token_nonce_matches,
      id_token: flow.id_token,
      userinfo,
      refreshed: tokenSummary(refreshed),
      refreshed_id_token_claims: oauth.getValidatedIdTokenClaims(refreshed) ?? null,
    }
  },

  // client_credentials (client_secret_basic) and the call API's admin interface.
  async 'client-credentials'(cfg) {
    const as = await discover(cfg.issuer)
    const client = clientOf(cfg.client)
    const tokens = await oauth.processClientCredentialsResponse(
      as,
      client,
      await oauth.clientCredentialsGrantRequest(
        as,
        client,
        secretAuth(cfg.client),
        { scope: cfg.scope },
        OPTS,
      ),
    )
    const claims = await validateAccessToken(as, cfg, tokens.access_token)
    const api = await callApi(
      tokens.access_token,
      'GET',
      `${cfg.call_api}/admin/users/${encodeURIComponent(cfg.user.sub)}/calls`,
    )
    return { tokens: tokenSummary(tokens), access_token_claims: claims, call_api: api }
  },

  // RFC 7009 and RFC 7662: a refresh token and an access token revoked, introspected.
  async revocation(cfg) {
    const as = await discover(cfg.issuer)
    const client = clientOf(cfg.client)
    const auth = secretAuth(cfg.client)
    const flow = await codeFlow(as, cfg, client, auth)
    const { access_token, refresh_token } = flow.tokens
    const before = await introspect(as, client, auth, access_token)
    await revoke(as, client, auth, refresh_token, 'refresh_token')
    const afterRefresh = await introspect(as, client, auth, access_token)
    let refreshError = null
    try {
      await refresh(as, client, auth, refresh_token)
    } catch (err) {
      refreshError = err.error ?? err.message
    }
    // Revoking an unknown or already revoked token is a success too (RFC 7009 §2.2).
    await revoke(as, client, auth, access_token, 'access_token')
    return {
      active_before: before.active,
      introspection_before: before,
      active_after_revoking_refresh_token: afterRefresh.active,
      refresh_after_revocation_error: refreshError,
    }
  },

  // RFC 7591 with an initial access token, then the new client's code flow.
  async registration(cfg) {
    const as = await discover(cfg.issuer)
    const registered = await register(as, cfg, {
      client_name: 'oauth4webapi registered app',
      redirect_uris: [cfg.redirect_uri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: cfg.scope ?? 'call',
    })
    const client = clientOf(registered)
    const flow = await codeFlow(as, cfg, client, oauth.ClientSecretBasic(registered.client_secret))
    return {
      registered: {
        ...registered,
        client_secret: registered.client_secret ? '(set)' : undefined,
        registration_access_token: registered.registration_access_token ? '(set)' : undefined,
      },
      tokens: tokenSummary(flow.tokens),
      access_token_claims: await validateAccessToken(as, cfg, flow.tokens.access_token),
    }
  },

  // private_key_jwt (RFC 7523 / OIDC Core §9): a client registered with its public key
  // (jwks) authenticates at the token, introspection and revocation endpoints.
  async 'private-key-jwt'(cfg) {
    const as = await discover(cfg.issuer)
    const { privateKey, publicKey } = await oauth.generateKeyPair('ES256', { extractable: true })
    const jwk = await crypto.subtle.exportKey('jwk', publicKey)
    const kid = 'oauth4webapi-1'
    const registered = await register(as, cfg, {
      client_name: 'oauth4webapi private_key_jwt app',
      redirect_uris: [cfg.redirect_uri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [{ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' }] },
      scope: 'call',
    })
    const client = clientOf(registered)
    const auth = oauth.PrivateKeyJwt({ key: privateKey, kid })
    const checks = await jwtClientChecks(as, cfg, client, auth)
    return { registered_auth_method: registered.token_endpoint_auth_method, ...checks }
  },

  // client_secret_jwt: an HMAC-signed assertion with the registered secret.
  async 'client-secret-jwt'(cfg) {
    const as = await discover(cfg.issuer)
    const registered = await register(as, cfg, {
      client_name: 'oauth4webapi client_secret_jwt app',
      redirect_uris: [cfg.redirect_uri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_jwt',
      scope: 'call',
    })
    const client = clientOf(registered)
    const auth = oauth.ClientSecretJwt(registered.client_secret)
    const checks = await jwtClientChecks(as, cfg, client, auth)
    return { registered_auth_method: registered.token_endpoint_auth_method, ...checks }
  },

  // RFC 8628: device authorization, the user at /device, polling.
  async device(cfg) {
    const as = await discover(cfg.issuer)
    const client = clientOf(cfg.client)
    const auth = secretAuth(cfg.client)
    const device = await oauth.processDeviceAuthorizationResponse(
      as,
      client,
      await oauth.deviceAuthorizationRequest(as, client, auth, { scope: cfg.scope ?? 'call' }, OPTS),
    )
    const poll = async () =>
      oauth.processDeviceCodeResponse(
        as,
        client,
        await oauth.deviceCodeGrantRequest(as, client, auth, device.device_code, OPTS),
      )
    let pending = null
    try {
      await poll()
    } catch (err) {
      pending = err.error ?? err.message
    }
    const browser = new Browser(cfg.user)
    const approval = await approveDevice(browser, device)
    // The RFC's interval between polls (slow_down otherwise): the test sets it short.
    const started = Date.now()
    let tokens
    const errors = []
    for (let attempt = 0; attempt < 10 && !tokens; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, (cfg.poll_interval ?? device.interval ?? 5) * 1000))
      try {
        tokens = await poll()
      } catch (err) {
        if (err.error !== 'authorization_pending' && err.error !== 'slow_down') throw err
        errors.push(err.error)
      }
    }
    if (!tokens) throw new Error(`no token after polling: ${errors.join(', ')}`)
    const claims = await validateAccessToken(as, cfg, tokens.access_token)
    const api = await callApi(tokens.access_token, 'GET', `${cfg.call_api}/rest/call`)
    return {
      device: {
        user_code: device.user_code,
        verification_uri: device.verification_uri,
        verification_uri_complete: device.verification_uri_complete,
        expires_in: device.expires_in,
        interval: device.interval,
      },
      first_poll_error: pending,
      poll_errors: errors,
      approval,
      polled_ms: Date.now() - started,
      tokens: tokenSummary(tokens),
      access_token_claims: claims,
      call_api: api,
    }
  },

  // RFC 9126: the authorization request pushed (client authenticated), then the code flow.
  async par(cfg) {
    const as = await discover(cfg.issuer)
    const client = clientOf(cfg.client)
    const auth = secretAuth(cfg.client)
    const flow = await codeFlow(as, cfg, client, auth, { par: true })
    // The request_uri is single-use: the authorization endpoint refuses it again.
    const again = new URL(as.authorization_endpoint)
    again.searchParams.set('client_id', client.client_id)
    again.searchParams.set('request_uri', flow.par.request_uri)
    const reuse = await fetch(again, { redirect: 'manual', headers: { accept: 'application/json' } })
    return {
      par: flow.par,
      pages: flow.pages,
      callback_params: flow.callback_params,
      tokens: tokenSummary(flow.tokens),
      access_token_claims: await validateAccessToken(as, cfg, flow.tokens.access_token),
      reuse_status: reuse.status,
      reuse_location: reuse.headers.get('location'),
    }
  },

  // RFC 9449: a public client with a DPoP key (ES256): PAR with dpop_jkt, DPoP-bound
  // tokens, the call API with proofs (GET and POST), a bound refresh.
  async dpop(cfg) {
    const as = await discover(cfg.issuer)
    const client = clientOf(cfg.client)
    const auth = oauth.None()
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
    const jkt = await dpop.calculateThumbprint()
    const flow = await codeFlow(as, cfg, client, auth, { dpop, par: cfg.par ?? false })
    const claims = await validateAccessToken(as, cfg, flow.tokens.access_token, dpop)
    const token = flow.tokens.access_token
    const calls = `${cfg.call_api}/rest/call`
    const list = await withDPoPNonce('call_api', () => callApi(token, 'GET', calls, undefined, dpop))
    const created = await withDPoPNonce('call_api', () =>
      callApi(token, 'POST', calls, { number: cfg.number }, dpop),
    )
    // The same token without its proof, as a plain bearer token: refused.
    const asBearer = await fetch(`${cfg.call_api}/rest/call`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    })
    // Another key cannot use the token nor the refresh token.
    const thief = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
    let thiefApi
    try {
      const answer = await withDPoPNonce('call_api (other key)', () =>
        callApi(token, 'GET', calls, undefined, thief),
      )
      thiefApi = answer.status
    } catch (err) {
      thiefApi = err.status ?? err.message
    }
    let thiefRefresh = null
    try {
      await refresh(as, client, auth, flow.tokens.refresh_token, thief)
    } catch (err) {
      thiefRefresh = err.error ?? err.message
    }
    const refreshed = await refresh(as, client, auth, flow.tokens.refresh_token, dpop)
    const refreshedClaims = await validateAccessToken(as, cfg, refreshed.access_token, dpop)
    const after = await withDPoPNonce('call_api', () =>
      callApi(refreshed.access_token, 'GET', calls, undefined, dpop),
    )
    return {
      jkt,
      par: flow.par ?? null,
      tokens: tokenSummary(flow.tokens),
      access_token_claims: claims,
      call_api_get: list,
      call_api_post: created,
      as_bearer: { status: asBearer.status, www_authenticate: asBearer.headers.get('www-authenticate') },
      other_key_call_api: thiefApi,
      other_key_refresh_error: thiefRefresh,
      refreshed: tokenSummary(refreshed),
      refreshed_claims: refreshedClaims,
      call_api_after_refresh: after,
      dpop_nonce_retries: nonceRetries,
    }
  },
}

async function approveDevice(browser, device) {
  // The user opens verification_uri_complete (the code filled in), signs in (the login form
  // is the one of the authorization endpoint; with JSON it answers "signed_in" rather than
  // redirecting back), checks the code, sees the consent and approves.
  const steps = []
  const page = new URL(device.verification_uri_complete ?? device.verification_uri)
  const json = async (response, what) => {
    const body = await response.json().catch(() => ({}))
    steps.push(`${response.status} ${what}`)
    if (response.status !== 200) throw new Error(`${what}: ${response.status} ${JSON.stringify(body)}`)
    return body
  }
  let response = await browser.fetch(page)
  if (response.status === 302) {
    const login = new URL(response.headers.get('location'), page)
    steps.push(`302 ${login.pathname}`)
    const form = await json(await browser.fetch(login), 'GET /auth/login')
    const signedIn = await browser.post(login, {
      username: browser.user.username,
      password: browser.user.password,
      csrf_token: form.csrf_token,
    })
    if (signedIn.status === 200) await json(signedIn, 'POST /auth/login')
    else steps.push(`${signedIn.status} POST /auth/login`)
    response = await browser.fetch(page)
  }
  const codeForm = await json(response, 'GET /device')
  if (codeForm.user_code !== device.user_code) {
    throw new Error(`/device prefilled ${codeForm.user_code}, the device shows ${device.user_code}`)
  }
  const consent = await json(
    await browser.post(new URL('/device', page), {
      user_code: codeForm.user_code,
      csrf_token: codeForm.csrf_token,
    }),
    'POST /device (code)',
  )
  const done = await json(
    await browser.post(new URL('/device', page), {
      user_code: consent.user_code,
      decision: 'approve',
      csrf_token: consent.csrf_token,
    }),
    'POST /device (approve)',
  )
  return {
    steps,
    consent: { client_name: consent.client_name, scope: consent.scope, username: consent.username },
    outcome: done.status,
  }
}

async function jwtClientChecks(as, cfg, client, auth) {
  const flow = await codeFlow(as, cfg, client, auth)
  const introspection = await introspect(as, client, auth, flow.tokens.access_token)
  const refreshed = await refresh(as, client, auth, flow.tokens.refresh_token)
  await revoke(as, client, auth, refreshed.refresh_token, 'refresh_token')
  let refreshError = null
  try {
    await refresh(as, client, auth, refreshed.refresh_token)
  } catch (err) {
    refreshError = err.error ?? err.message
  }
  return {
    tokens: tokenSummary(flow.tokens),
    access_token_claims: await validateAccessToken(as, cfg, flow.tokens.access_token),
    introspection,
    refreshed: tokenSummary(refreshed),
    refresh_after_revocation_error: refreshError,
  }
}

// --- main ------------------------------------------------------------------------------

async function readConfig(arg) {
  if (arg) return JSON.parse(arg)
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString() || '{}')
}

function describe(err) {
  const out = { error: err.message, name: err.name, code: err.code }
  if (err.error) out.oauth_error = err.error
  if (err.error_description) out.error_description = err.error_description
  if (err.status) out.status = err.status
  if (err.cause !== undefined) {
    try {
      out.cause = JSON.parse(JSON.stringify(err.cause))
    } catch {
      out.cause = String(err.cause)
    }
  }
  out.stack = err.stack
  return out
}

const [name, arg] = process.argv.slice(2)
const flow = flows[name]
if (!flow) {
  console.log(JSON.stringify({ error: `unknown flow ${name}; one of: ${Object.keys(flows).join(', ')}` }))
  process.exit(2)
}
try {
  const result = await flow(await readConfig(arg))
  console.log(JSON.stringify(result))
} catch (err) {
  console.log(JSON.stringify(describe(err)))
  process.exit(1)
}
