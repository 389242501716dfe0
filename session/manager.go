package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/token"
)

// Defaults for Config's zero values.
const (
	DefaultAccessTTL    = 15 * time.Minute
	DefaultRefreshTTL   = 12 * time.Hour
	DefaultRefreshGrace = 5 * time.Second
	// DefaultSubjectCutTTL is how long a subject cut is kept by default (see SubjectCutter): a day,
	// past the life of the identity providers' ID tokens (an hour at Google, Entra ID, Okta) and of
	// Keyfort's bare tokens.
	DefaultSubjectCutTTL = 24 * time.Hour
	// RefreshAudience is the aud of refresh tokens: no service accepts them as access tokens.
	RefreshAudience = "keyfort:refresh"
)

// The errors a Manager returns; each wraps the detailed cause.
var (
	// ErrUnauthenticated: the presented token is invalid, expired, revoked or of the wrong kind.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrRefreshReuse: a refresh token was presented again after it had been used; the whole family
	// is revoked, as the token was probably stolen.
	ErrRefreshReuse = errors.New("refresh token reuse detected; session revoked")
	// ErrUnknownIdP: StartSession named an identity provider that is not configured.
	ErrUnknownIdP = errors.New("unknown identity provider")
	// ErrClientMismatch: a token bound to a client (StartRequest.Client: a refresh token, and with
	// Config.BindAccessTokens an access token) was presented by another, or by none; nothing was
	// rotated or revoked. It wraps ErrUnauthenticated.
	ErrClientMismatch = fmt.Errorf("%w: token is bound to another client", ErrUnauthenticated)
)

// Config configures a Manager.
type Config struct {
	// Issuer is the iss of Keyfort's own tokens.
	Issuer string
	// Audience is the aud of access tokens (default Issuer).
	Audience string
	// Keys and Signer sign and verify the tokens (session_signing from the provider).
	Keys   token.KeySource
	Signer token.RemoteSigner
	// IdPs validate external tokens at StartSession, by name ("google").
	IdPs map[string]*oidc.Verifier
	// Store keeps refresh-token families and revocations (default: a MemoryStore).
	Store Store
	// AccessTTL, RefreshTTL and RefreshGrace default to DefaultAccessTTL, DefaultRefreshTTL and
	// DefaultRefreshGrace.
	AccessTTL, RefreshTTL, RefreshGrace time.Duration
	// BindAccessTokens binds a session's access tokens, too, to the client StartRequest.Client
	// names: they carry its identity (claim cli), and a guard (grpcauth, Session.CheckClient)
	// serves them only to a caller presenting a certificate of that identity, so an access token
	// copied out of its client (a log, a proxy, a heap dump) is useless elsewhere. Off by default:
	// a client that hands its access token to another workload (a gateway relaying it) must not
	// bind it. Bare tokens (IssueToken) are never bound. A client named by a DPoP key
	// (dpop.Identity: it proved the key when it started the session) has its access tokens bound
	// whatever this says.
	BindAccessTokens bool
	// MaxSessionsPerSubject, when positive, bounds the live sessions of one subject at one identity
	// provider: a StartSession beyond it ends the oldest (a user's devices, most recent first). It
	// needs a SubjectLister store (memory, Redis and PostgreSQL are). Replicas starting sessions
	// for one subject at the same moment may leave one over the bound until the next start.
	MaxSessionsPerSubject int
	// SubjectCutTTL is how long the cut of EndSubjectSessions is kept (default
	// DefaultSubjectCutTTL, and never less than AccessTTL): tokens it ends that live longer
	// (an identity provider's token valid for more than a day) work again after it.
	SubjectCutTTL time.Duration
	// RevokedKeys, when set, is the deny list of signing keys (NewRevokedKeys on the Store): a
	// token a revoked key signed is refused, and a revoked active key signs nothing (StartSession
	// and RefreshSession fail until the key is rotated at its provider). Nil: none is revoked.
	RevokedKeys *RevokedKeys
	// HashKey keys the hashes that identify tokens in stores (at least 32 random bytes, the same for
	// every replica). Default: the Store's when it is a HashKeyHolder (MemoryStore and
	// redisstore.Store are), so replicas sharing a store agree without configuration.
	HashKey []byte
	// Policy is the guardrail EvaluatePolicy applies.
	Policy Policy
	// Logger: nil means slog.Default(). Now: nil means time.Now.
	Logger *slog.Logger
	Now    func() time.Time
	// TracerProvider receives a span for each StartSession, RefreshSession(From), EndSession(From),
	// EndSubjectSessions and IssueToken, named SpanPrefix + the method, with the identity provider,
	// the session id and the outcome (see Outcome); the provider's spans for signing nest under it.
	// nil: no spans.
	TracerProvider trace.TracerProvider
}

// Manager starts, refreshes and ends sessions and issues Keyfort's own tokens. It is safe for
// concurrent use.
type Manager struct {
	cfg    Config
	codec  *token.Codec
	store  Store
	log    *slog.Logger
	now    func() time.Time
	tracer trace.Tracer // nil: no spans
}

// Tokens are a session's tokens.
type Tokens struct {
	SessionID        string
	AccessToken      string
	AccessExpiresAt  time.Time
	RefreshToken     string
	RefreshExpiresAt time.Time
	// Client is the client the access token is bound to (its cli claim): a certificate's identity,
	// a DPoP key's (dpop.Identity), or "" for a bearer token.
	Client string
	// Subject, Tenant and IdP are the session's (for the caller's records and audit logs).
	Subject, Tenant, IdP string
	// Evicted are the sessions of the subject StartSession ended to stay within
	// Config.MaxSessionsPerSubject (oldest first).
	Evicted []string
}

// StartRequest asks for a session on the strength of an external identity token.
type StartRequest struct {
	Subject       string // must equal the external token's sub when set
	Tenant        string
	IdP           string // a key of Config.IdPs
	ExternalToken string
	Scope         string
	// Client, when set, binds the session's refresh tokens to the client that starts it (the
	// identity of its certificate over mutual TLS: URI SAN or subject): RefreshSessionFrom refreshes
	// them only for that client, so a refresh token stolen from it is useless to anyone else.
	Client string
}

// NewManager returns a Manager.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Issuer == "" || cfg.Keys == nil {
		return nil, errors.New("session: Config needs Issuer and Keys")
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.Issuer
	}
	cfg.AccessTTL = orDefault(cfg.AccessTTL, DefaultAccessTTL)
	cfg.RefreshTTL = orDefault(cfg.RefreshTTL, DefaultRefreshTTL)
	cfg.RefreshGrace = orDefault(cfg.RefreshGrace, DefaultRefreshGrace)
	cfg.SubjectCutTTL = max(orDefault(cfg.SubjectCutTTL, DefaultSubjectCutTTL), cfg.AccessTTL)
	if cfg.RefreshGrace < 0 {
		cfg.RefreshGrace = 0
	}
	if cfg.HashKey != nil && len(cfg.HashKey) < 32 {
		return nil, errors.New("session: HashKey must be at least 32 bytes")
	}
	if cfg.MaxSessionsPerSubject < 0 {
		return nil, errors.New("session: MaxSessionsPerSubject must not be negative")
	}
	m := &Manager{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now, tracer: tracerOf(cfg.TracerProvider)}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.store == nil {
		m.store = NewMemoryStore(m.now)
	}
	if _, ok := m.store.(SubjectLister); cfg.MaxSessionsPerSubject > 0 && !ok {
		return nil, errors.New("session: MaxSessionsPerSubject needs a store that lists a subject's sessions (SubjectLister)")
	}
	m.cfg.HashKey = hashKeyOf(cfg.HashKey, m.store)
	codec, err := token.New(token.Config{Issuer: cfg.Issuer, Keys: cfg.Keys, Signer: cfg.Signer, Now: m.now,
		Revoked: cfg.RevokedKeys.revokedFunc()})
	if err != nil {
		return nil, err
	}
	m.codec = codec
	return m, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Issuer is the iss of the Manager's tokens.
func (m *Manager) Issuer() string { return m.cfg.Issuer }

// Audience is the aud of the Manager's access tokens (Config.Audience, default the Issuer).
func (m *Manager) Audience() string { return m.cfg.Audience }

// Codec returns the token codec (for verifying access tokens elsewhere).
func (m *Manager) Codec() *token.Codec { return m.codec }

// Store returns the store.
func (m *Manager) Store() Store { return m.store }

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TokenKey is the keyed hash identifying a token (its signed part) in stores and caches.
func (m *Manager) TokenKey(signedPart string) string {
	h := hmac.New(sha256.New, m.cfg.HashKey)
	h.Write([]byte(signedPart))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func unauthenticated(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// StartSession validates the external token with the named identity provider (iss, aud = our client
// id, signature, expiry; sub must match Subject when given) and issues an access and a refresh token.
func (m *Manager) StartSession(ctx context.Context, req StartRequest) (Tokens, error) {
	ctx, span := startSpan(ctx, m.tracer, "StartSession", AttrIdP.String(req.IdP))
	t, err := m.startSession(ctx, req)
	endSpan(span, err, AttrSession.String(t.SessionID))
	return t, err
}

func (m *Manager) startSession(ctx context.Context, req StartRequest) (Tokens, error) {
	v, ok := m.cfg.IdPs[req.IdP]
	if !ok {
		return Tokens{}, fmt.Errorf("%w: %q", ErrUnknownIdP, req.IdP)
	}
	ext, err := v.Verify(ctx, req.ExternalToken)
	if err != nil {
		return Tokens{}, unauthenticated("external token: %v", err)
	}
	if req.Subject != "" && req.Subject != ext.Subject {
		return Tokens{}, unauthenticated("subject does not match the external token's sub")
	}
	origin := m.TokenKey(ext.SignedPart)
	var dead bool
	if c, ok := m.store.(SubjectCutter); ok {
		dead, err = c.TokenEnded(ctx, TokenRef{Key: origin, Subject: ext.Subject, IdP: req.IdP, IssuedAt: ext.IssuedAt})
	} else {
		dead, err = m.store.Tombstoned(ctx, origin)
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	if dead {
		return Tokens{}, unauthenticated("external token was logged out")
	}
	now := m.now()
	f := Family{
		ID: randomID(), SessionID: randomID(), Subject: ext.Subject, Tenant: req.Tenant, IdP: req.IdP, Scope: req.Scope,
		Current: randomID(), CurrentIssuedAt: now, ExpiresAt: now.Add(m.cfg.RefreshTTL),
		Origin: origin, OriginExpiresAt: ext.ExpiresAt,
	}
	if err := m.store.CreateFamily(ctx, f); err != nil {
		return Tokens{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	evicted, err := m.evictOldest(ctx, f, now)
	if err != nil {
		return Tokens{}, err // fail closed; the new family, held by no one, expires
	}
	t, err := m.issue(ctx, f, req.Client)
	t.Evicted = evicted
	return t, err
}

// evictOldest ends the oldest sessions of f's subject at f's identity provider beyond
// MaxSessionsPerSubject (f, just made, is the newest and stays), as a logout does, and returns
// their session IDs.
func (m *Manager) evictOldest(ctx context.Context, f Family, now time.Time) ([]string, error) {
	limit := m.cfg.MaxSessionsPerSubject
	if limit <= 0 {
		return nil, nil
	}
	live, err := m.store.(SubjectLister).SubjectFamilies(ctx, SubjectSelector{Subject: f.Subject, IdP: f.IdP, Except: []string{f.SessionID}}, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	// Only sessions started before this one are candidates: two logins of one subject at once then
	// never end each other (the newer stays), at the cost of one over the bound until the next.
	// A family's ExpiresAt is its start plus RefreshTTL, never moved by a rotation.
	live = slices.DeleteFunc(live, func(o Family) bool { return !o.ExpiresAt.Before(f.ExpiresAt) })
	if len(live) < limit {
		return nil, nil
	}
	slices.SortFunc(live, func(a, b Family) int { return a.ExpiresAt.Compare(b.ExpiresAt) }) // oldest first
	var evicted []string
	for _, old := range live[:len(live)-(limit-1)] {
		if err := m.store.RevokeFamily(ctx, old.ID); err != nil {
			return evicted, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		if old.Origin != "" && now.Before(old.OriginExpiresAt) {
			if err := m.store.Tombstone(ctx, old.Origin, old.OriginExpiresAt); err != nil {
				return evicted, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
			}
		}
		evicted = append(evicted, old.SessionID)
	}
	return evicted, nil
}

// issue signs the access token and the refresh token of family f's current member, the refresh
// token (and with BindAccessTokens the access token) bound to client when it is set. A client
// that proved a DPoP key has its access tokens bound to it whatever BindAccessTokens says: binding
// them is what it asked for by proving the key.
func (m *Manager) issue(ctx context.Context, f Family, client string) (Tokens, error) {
	now := m.now()
	var accessClient string
	if m.cfg.BindAccessTokens || dpop.IsIdentity(client) {
		accessClient = client
	}
	accessExp := now.Add(m.cfg.AccessTTL)
	if accessExp.After(f.ExpiresAt) {
		accessExp = f.ExpiresAt
	}
	access, err := m.codec.Sign(ctx, token.TypeAccess, token.Claims{
		Subject: f.Subject, Audience: m.cfg.Audience, ExpiresAt: accessExp.Unix(), IssuedAt: now.Unix(),
		ID: randomID(), Tenant: f.Tenant, IdP: f.IdP, SessionID: f.SessionID, Family: f.ID, Scope: f.Scope,
		Client: accessClient,
	})
	if err != nil {
		return Tokens{}, err
	}
	refresh, err := m.codec.Sign(ctx, token.TypeRefresh, token.Claims{
		Subject: f.Subject, Audience: RefreshAudience, ExpiresAt: f.ExpiresAt.Unix(), IssuedAt: f.CurrentIssuedAt.Unix(),
		ID: f.Current, Tenant: f.Tenant, IdP: f.IdP, SessionID: f.SessionID, Family: f.ID, Client: client,
	})
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{SessionID: f.SessionID, AccessToken: access, AccessExpiresAt: accessExp,
		RefreshToken: refresh, RefreshExpiresAt: f.ExpiresAt, Client: accessClient, Subject: f.Subject, Tenant: f.Tenant, IdP: f.IdP}, nil
}

// ReuseError is RefreshSession's error when a spent refresh token was presented again: errors.Is
// it ErrRefreshReuse, and it names the session whose family was revoked (for audit records).
type ReuseError struct {
	Family, SessionID, Subject, Tenant, IdP string
}

// Error is ErrRefreshReuse's message; the fields carry the details for logs and audit records.
func (e *ReuseError) Error() string { return ErrRefreshReuse.Error() }

// Unwrap makes errors.Is(err, ErrRefreshReuse) true.
func (e *ReuseError) Unwrap() error { return ErrRefreshReuse }

// RefreshSession checks the refresh token's signature and expiry and rotates it: the answer carries a
// new refresh token, and the presented one is spent. Presenting a spent refresh token again revokes
// the whole family (theft), except for the immediate predecessor within the grace window, which gets
// the same successor. Store failures fail closed. A refresh token bound to a client is refused
// here (ErrClientMismatch): refresh it with RefreshSessionFrom.
func (m *Manager) RefreshSession(ctx context.Context, refreshToken string) (Tokens, error) {
	return m.RefreshSessionFrom(ctx, refreshToken, "")
}

// RefreshSessionFrom is RefreshSession for the client named client (see StartRequest.Client): a
// refresh token bound to a client is refreshed only for that one, and its successor is bound to it
// too; presented by another, it is refused with ErrClientMismatch before anything is rotated, so
// the session goes on for its client.
func (m *Manager) RefreshSessionFrom(ctx context.Context, refreshToken, client string) (Tokens, error) {
	ctx, span := startSpan(ctx, m.tracer, "RefreshSession")
	t, err := m.refreshSession(ctx, refreshToken, client)
	endSpan(span, err, AttrSession.String(t.SessionID), AttrIdP.String(t.IdP))
	return t, err
}

func (m *Manager) refreshSession(ctx context.Context, refreshToken, client string) (Tokens, error) {
	cl, err := m.codec.Verify(ctx, refreshToken, token.TypeRefresh, RefreshAudience)
	if err != nil {
		return Tokens{}, unauthenticated("refresh token: %v", err)
	}
	if cl.Family == "" || cl.ID == "" {
		return Tokens{}, unauthenticated("refresh token has no family")
	}
	if cl.Client != "" && cl.Client != client {
		return Tokens{}, ErrClientMismatch
	}
	f, outcome, err := m.store.Rotate(ctx, cl.Family, cl.ID, randomID(), m.now(), m.cfg.RefreshGrace)
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	switch outcome {
	case Rotated, Grace:
		return m.issue(ctx, f, cl.Client)
	case Reuse:
		m.log.Warn("keyfort: refresh token reuse; session family revoked",
			slog.String("family", cl.Family), slog.String("subject", cl.Subject), slog.String("session", cl.SessionID))
		return Tokens{}, &ReuseError{Family: cl.Family, SessionID: cl.SessionID, Subject: cl.Subject, Tenant: cl.Tenant, IdP: cl.IdP}
	default:
		return Tokens{}, unauthenticated("session revoked or expired")
	}
}

// VerifyAccess checks an access token and that its session was not ended.
func (m *Manager) VerifyAccess(ctx context.Context, accessToken string) (token.Claims, error) {
	cl, err := m.codec.Verify(ctx, accessToken, token.TypeAccess, m.cfg.Audience)
	if err != nil {
		return cl, unauthenticated("access token: %v", err)
	}
	return cl, familyLive(ctx, m.store, cl.Family)
}

// familyLive fails with ErrUnauthenticated when the session family was revoked (logout, theft) or is
// gone, and with ErrStoreUnavailable when the store cannot say; an empty family (a bare token) is
// live.
func familyLive(ctx context.Context, store Store, family string) error {
	if family == "" {
		return nil
	}
	f, err := store.Family(ctx, family)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	if f.Revoked {
		return unauthenticated("session revoked")
	}
	return nil
}

// Logout ends the session of an access or refresh token: its family is revoked, so neither it nor
// any token of the family works again, and the external token that started it is tombstoned until
// it expires, so it cannot start a session again. A bare token of IssueToken (no session) is
// tombstoned itself until it expires.
func (m *Manager) Logout(ctx context.Context, anyToken string) error {
	_, err := m.EndSession(ctx, anyToken)
	return err
}

// EndSession is Logout, returning the family it ended (its session id, subject, tenant and identity
// provider, for the caller's records). It ends the session of any valid token, bound to a client or
// not: it is for the caller that holds the token legitimately (an operator, a test); a service
// ending sessions for its callers uses EndSessionFrom.
func (m *Manager) EndSession(ctx context.Context, anyToken string) (Family, error) {
	return m.endSession(ctx, anyToken, "", false)
}

// EndSessionFrom is EndSession for the client named client (see StartRequest.Client): a token bound
// to a client ends its session only when that client presents it; presented by another, or by
// none, it is refused with ErrClientMismatch and nothing ends, so a thief of a bound token cannot
// log its user out either.
func (m *Manager) EndSessionFrom(ctx context.Context, anyToken, client string) (Family, error) {
	return m.endSession(ctx, anyToken, client, true)
}

func (m *Manager) endSession(ctx context.Context, anyToken, client string, checkClient bool) (Family, error) {
	ctx, span := startSpan(ctx, m.tracer, "EndSession")
	f, err := m.endSessionTraced(ctx, anyToken, client, checkClient)
	endSpan(span, err, AttrSession.String(f.SessionID), AttrIdP.String(f.IdP))
	return f, err
}

func (m *Manager) endSessionTraced(ctx context.Context, anyToken, client string, checkClient bool) (Family, error) {
	cl, err := m.codec.Verify(ctx, anyToken, token.TypeAccess, m.cfg.Audience)
	if err != nil {
		if cl, err = m.codec.Verify(ctx, anyToken, token.TypeRefresh, RefreshAudience); err != nil {
			return Family{}, unauthenticated("logout: %v", err)
		}
	}
	if checkClient && cl.Client != "" && cl.Client != client {
		return Family{}, ErrClientMismatch
	}
	if cl.Family == "" {
		// A bare token of IssueToken: no session to revoke, so the token itself is tombstoned
		// until it expires (a cache sharing the store refuses it from now on, and ends its session
		// of it on the feed).
		signed, _, _ := split(anyToken)
		if exp := time.Unix(cl.ExpiresAt, 0); m.now().Before(exp) {
			if err := m.store.Tombstone(ctx, m.TokenKey(signed), exp); err != nil {
				return Family{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
			}
		}
		return Family{Subject: cl.Subject, Tenant: cl.Tenant, IdP: cl.IdP, Revoked: true}, nil
	}
	f, err := m.store.Family(ctx, cl.Family)
	if err != nil {
		return Family{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	if err := m.store.RevokeFamily(ctx, cl.Family); err != nil {
		return Family{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	// The external token that started the session cannot start another one, on any replica, nor
	// open a session with a Cache that shares the store (a guarded service accepting it).
	if f.Origin != "" && m.now().Before(f.OriginExpiresAt) {
		if err := m.store.Tombstone(ctx, f.Origin, f.OriginExpiresAt); err != nil {
			return Family{}, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
	}
	if f.SessionID == "" { // already gone from the store (expired): what the token says
		f = Family{ID: cl.Family, SessionID: cl.SessionID, Subject: cl.Subject, Tenant: cl.Tenant, IdP: cl.IdP}
	}
	f.Revoked = true
	return f, nil
}

// ErrNoSubjectRevocation is returned by EndSubjectSessions over a store without SubjectRevoker.
var ErrNoSubjectRevocation = errors.New("session: the store cannot end a subject's sessions (no SubjectRevoker)")

// EndSubjectSessions ends the sessions sel selects: every session of a subject ("sign out
// everywhere", or an operator ending a compromised account's sessions), some of them, or all but
// some ("sign out my other devices"). Every live family selected is revoked
// (its refresh tokens refused, its access tokens refused wherever they are revalidated, cached
// sessions on the store's feed ended with their leases), and the external token that started each
// is tombstoned until it expires, so a stolen ID token cannot start a new one.
//
// When sel selects every session of the subject (no Only, no Except) and the store is a
// SubjectCutter, the subject is also cut for SubjectCutTTL: every token of the subject issued up
// to now that no family stands for ends too — bare tokens of IssueToken (when sel names no
// identity provider) and the identity provider's tokens, presented to StartSession or straight to
// a guarded service sharing the store. It returns the families ended and the cut's moment.
func (m *Manager) EndSubjectSessions(ctx context.Context, sel SubjectSelector) (SubjectEnd, error) {
	ctx, span := startSpan(ctx, m.tracer, "EndSubjectSessions", AttrIdP.String(sel.IdP))
	end, err := EndSubject(ctx, m.store, sel, m.now(), m.cfg.SubjectCutTTL)
	if span != nil {
		span.SetAttributes(attribute.Int("keyfort.session.ended", len(end.Ended)))
	}
	endSpan(span, err)
	return end, err
}

// SubjectEnd is what ending a subject's sessions did.
type SubjectEnd struct {
	// Ended are the live families revoked: the sessions ended.
	Ended []Family
	// CutBefore is the Before of the subject cut made (SubjectCut): the subject's tokens without a
	// family issued before it are refused. Zero: no cut (some sessions picked, or a store without
	// cuts).
	CutBefore time.Time
}

// EndSubject is EndSubjectSessions on a store directly, with no Manager (provider-host
// end-sessions, an operator's break-glass path): the live families sel selects revoked at now, the
// external tokens that started them tombstoned, and, when sel selects every session of the subject
// and the store is a SubjectCutter, the subject cut at now for cutTTL (at most 0: the default,
// DefaultSubjectCutTTL). The store must be a SubjectRevoker.
func EndSubject(ctx context.Context, store Store, sel SubjectSelector, now time.Time, cutTTL time.Duration) (SubjectEnd, error) {
	var out SubjectEnd
	if sel.Subject == "" {
		return out, errors.New("session: ending a subject's sessions needs a subject")
	}
	rs, ok := store.(SubjectRevoker)
	if !ok {
		return out, ErrNoSubjectRevocation
	}
	// The cut first: from the moment the families are revoked, no token of the subject issued
	// before starts a session anywhere (a stolen ID token racing the revocation included).
	if c, ok := store.(SubjectCutter); ok && sel.All() {
		if cutTTL <= 0 {
			cutTTL = DefaultSubjectCutTTL
		}
		cut := SubjectCut{Subject: sel.Subject, IdP: sel.IdP, Before: CutBefore(now), Until: now.Add(cutTTL)}
		if err := c.CutSubject(ctx, cut); err != nil {
			return out, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		out.CutBefore = cut.Before
	}
	var err error
	out.Ended, err = rs.RevokeSubject(ctx, sel, now)
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	for _, f := range out.Ended {
		if f.Origin != "" && now.Before(f.OriginExpiresAt) {
			if err := store.Tombstone(ctx, f.Origin, f.OriginExpiresAt); err != nil {
				return out, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
			}
		}
	}
	return out, nil
}

// ErrNoSubjectListing is returned by SubjectSessions over a store without SubjectLister.
var ErrNoSubjectListing = errors.New("session: the store cannot list a subject's sessions (no SubjectLister)")

// SubjectSessions lists the live sessions sel selects, as refresh-token families (session, tenant,
// identity provider, scope, last refresh, expiry).
func (m *Manager) SubjectSessions(ctx context.Context, sel SubjectSelector) ([]Family, error) {
	if sel.Subject == "" {
		return nil, errors.New("session: listing a subject's sessions needs a subject")
	}
	sl, ok := m.store.(SubjectLister)
	if !ok {
		return nil, ErrNoSubjectListing
	}
	fams, err := sl.SubjectFamilies(ctx, sel, m.now())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	return fams, nil
}

// IssueRequest asks for a bare access token (the compatibility path: no session, no refresh).
type IssueRequest struct {
	Subject string
	Tenant  string
	Scope   string
	TTL     time.Duration // default and maximum: Config.AccessTTL
	// Client, when set, binds the token to that client (its cli claim): a certificate's identity
	// (session.ClientIdentity) or a DPoP key's (dpop.Identity). Guards serve it to that client only.
	Client string
}

// IssueToken signs a bare access token.
func (m *Manager) IssueToken(ctx context.Context, req IssueRequest) (string, time.Time, error) {
	ctx, span := startSpan(ctx, m.tracer, "IssueToken")
	tok, exp, err := m.issueToken(ctx, req)
	endSpan(span, err)
	return tok, exp, err
}

func (m *Manager) issueToken(ctx context.Context, req IssueRequest) (string, time.Time, error) {
	if req.Subject == "" {
		return "", time.Time{}, errors.New("session: IssueToken needs a subject")
	}
	ttl := req.TTL
	if ttl <= 0 || ttl > m.cfg.AccessTTL {
		ttl = m.cfg.AccessTTL
	}
	now := m.now()
	exp := now.Add(ttl)
	tok, err := m.codec.Sign(ctx, token.TypeAccess, token.Claims{
		Subject: req.Subject, Audience: m.cfg.Audience, ExpiresAt: exp.Unix(), IssuedAt: now.Unix(),
		ID: randomID(), Tenant: req.Tenant, Scope: req.Scope, Client: req.Client,
	})
	return tok, exp, err
}
