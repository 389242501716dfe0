package main

import (
	"cmp"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/redisstore"
)

// Exit statuses of the admin commands.
const (
	exitFailing       = 1 // a configured key does not resolve
	exitInvalidConfig = 2 // the configuration itself is invalid
)

type configFlags struct {
	files   []string
	timeout time.Duration
	verbose bool
	// keepGoing opens the catalog even when providers do not start (catalog.Options.KeepGoing):
	// check reports them, and the keys bound to them, as failing lines.
	keepGoing bool
}

func (f *configFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "config", "c", nil,
		"configuration file (YAML, TOML or JSON); repeat to layer files. KEYFORT_* variables apply on top")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "overall deadline")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log plugin activity to stderr")
}

func (f *configFlags) logger(stderr io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// openCatalog loads the configuration and starts its providers through this very binary.
func (f *configFlags) openCatalog(ctx context.Context, stderr io.Writer, verify bool) (*catalog.Catalog, error) {
	cfg, err := config.Load(config.Source{Files: f.files})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitCode(exitInvalidConfig)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Open(ctx, cfg, catalog.Options{HostBinary: self, Verify: verify, KeepGoing: f.keepGoing, Logger: f.logger(stderr)})
	if err != nil {
		fmt.Fprintln(stderr, err)
		var missing *catalog.MissingError
		if errors.As(err, &missing) {
			return nil, exitCode(exitFailing)
		}
		return nil, exitCode(exitInvalidConfig)
	}
	return cat, nil
}

// run is the shape of every admin command: a deadline and the signals, the configuration's
// catalog (its providers started through this binary), then fn; the catalog is closed after.
func (f *configFlags) run(cmd *cobra.Command, fn func(ctx context.Context, cat *catalog.Catalog) error) error {
	ctx, cancel := signalContext(f.timeout)
	defer cancel()
	cat, err := f.openCatalog(ctx, cmd.ErrOrStderr(), false)
	if err != nil {
		return err
	}
	defer cat.Close()
	return fn(ctx, cat)
}

// sharedStore is a shared session store as the admin commands open it.
type sharedStore interface {
	session.Store
	session.RevocationFeed
	session.SubjectRevoker
	session.SubjectLister
	session.KeyRevoker
}

// openSharedStore opens the configuration's shared session store for an admin command: Redis as
// serve does, PostgreSQL without migrations or cleanup (admin commands change no tables). key and
// shown name it in output (the URL's password masked); with no shared store configured, key is "".
func openSharedStore(ctx context.Context, cat *catalog.Catalog) (st sharedStore, key, shown string, err error) {
	cfg := cat.Config()
	switch {
	case cfg.Session.PostgresURL != "":
		key, shown = "identity.session.postgres_url", pgstore.RedactedURL(cfg.Session.PostgresURL)
		c, err := pgstore.Configured(ctx, cfg, cat)
		if err != nil {
			return nil, key, shown, err
		}
		c.DisableMigration, c.CleanupInterval = true, -1
		ps, err := pgstore.New(ctx, c)
		if err != nil {
			return nil, key, shown, err
		}
		return ps, key, shown, nil
	case cfg.Session.RedisURL != "":
		key, shown = "identity.session.redis_url", redisstore.RedactedURL(cfg.Session.RedisURL)
		c, err := redisstore.Configured(ctx, cfg, cat)
		if err != nil {
			return nil, key, shown, err
		}
		c.HashKeyCheck = -1 // a command that ends in seconds keeps nothing
		rs, err := redisstore.New(ctx, c)
		if err != nil {
			return nil, key, shown, err
		}
		return rs, key, shown, nil
	}
	return nil, "", "", nil
}

func signalContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if timeout <= 0 {
		return ctx, stop
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	return tctx, func() { cancel(); stop() }
}

func newCheckCmd() *cobra.Command {
	var (
		f      configFlags
		idps   bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Resolve every configured key and report each as ok or failing",
		Long: `Load the configuration, start its providers and resolve every configured key: key sets, secrets
and credentials (whose leases are revoked at once). One line per key; no secret value is printed.

With identity.session.redis_url or postgres_url set, it also connects to the shared session store
(logging in with identity.secrets.redis_password or postgres_password when bound; on PostgreSQL it
reports the tables' schema version and never creates or changes them: see "migrate"), and with --identity-providers it fetches each identity
provider's discovery document and key set (identity.secrets.oidc.NAME.issuer) as serve does at
start-up; each is a line of its own. With the OTEL_* environment asking for traces, it checks that
serve can export them as asked (exporter and protocol; the collector is not contacted).

Exit status: 0 when every key resolves, 1 when any fails, 2 when the configuration is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.keepGoing = true
			return f.run(cmd, func(ctx context.Context, cat *catalog.Catalog) error {
				var rep checkReport
				if cat.Config().Empty() {
					rep.Warning = "no configuration; only the ephemeral signing key exists"
				}
				startErrs := cat.StartErrors()
				for _, name := range slices.Sorted(maps.Keys(startErrs)) {
					pc := cat.Config().Providers[name]
					where := pc.Type
					if pc.Plugin != "" {
						where = pc.Plugin
					}
					err := startErrs[name].Err
					rep.add(checkLine{Key: "providers." + name, Where: where, Detail: "did not start: " + oneLine(err.Error()), Kind: provider.KindName(provider.KindOf(err))})
				}
				for _, r := range cat.Check(ctx) {
					line := checkLine{OK: r.OK(), Key: r.Binding.Key, Where: r.Binding.String(), Detail: r.Detail}
					if r.Err != nil {
						line.Detail, line.Kind = oneLine(r.Err.Error()), provider.KindName(provider.KindOf(r.Err))
						if se, ok := errors.AsType[*catalog.StartError](r.Err); ok {
							line.Detail = fmt.Sprintf("provider %q did not start (providers.%s)", se.Provider, se.Provider)
						}
					}
					rep.add(line)
				}
				for _, name := range slices.Sorted(maps.Keys(cat.Config().OIDC)) {
					if !idps {
						break
					}
					rep.add(checkIdentityProvider(ctx, cat, name))
				}
				if cat.Config().Session.RedisURL != "" || cat.Config().Session.PostgresURL != "" {
					rep.add(checkSessionStore(ctx, cat))
				}
				if tracingRequested() {
					rep.add(checkTracing())
				}
				if err := rep.write(cmd.OutOrStdout(), asJSON); err != nil {
					return err
				}
				if rep.Failing > 0 {
					return exitCode(exitFailing)
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&idps, "identity-providers", false, "also fetch each identity provider's discovery document and key set, as serve does at start-up (needs network access to them)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print one JSON document instead of lines: {"ok", "failing", "warning", "checks": [{"key", "where", "ok", "detail", "error_kind"}]}`)
	return cmd
}

// checkLine is one thing check resolved: a configured key, an identity provider, the session store.
type checkLine struct {
	Key string `json:"key"`
	// Where is the binding (provider:location), the issuer or the store's URL without its password.
	Where string `json:"where"`
	OK    bool   `json:"ok"`
	// Detail is what was found (kids, versions, schema), or why it failed; never a secret value.
	Detail string `json:"detail"`
	// Kind is the failure's error kind (not_found, permission_denied, unavailable …); "" when ok.
	Kind string `json:"error_kind,omitempty"`
}

// checkReport is check's whole answer.
type checkReport struct {
	OK      bool        `json:"ok"`
	Failing int         `json:"failing"`
	Warning string      `json:"warning,omitempty"`
	Checks  []checkLine `json:"checks"`
}

// oneLine folds a multi-line error (go-plugin explains a plugin that did not start over a dozen
// lines) into one, so that check keeps to a line per check.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (r *checkReport) add(l checkLine) {
	r.Checks = append(r.Checks, l)
	if !l.OK {
		r.Failing++
	}
}

// write prints the report as lines ("ok   KEY  WHERE  DETAIL", "FAIL …") or as one JSON document.
func (r *checkReport) write(w io.Writer, asJSON bool) error {
	r.OK = r.Failing == 0
	if asJSON {
		if r.Checks == nil {
			r.Checks = []checkLine{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if r.Warning != "" {
		fmt.Fprintln(w, "warning: "+r.Warning)
	}
	for _, l := range r.Checks {
		status := "ok  "
		if !l.OK {
			status = "FAIL"
		}
		fmt.Fprintf(w, "%s %s  %s  %s\n", status, l.Key, l.Where, l.Detail)
	}
	if r.Failing > 0 {
		fmt.Fprintf(w, "%d key(s) failing\n", r.Failing)
	}
	return nil
}

// checkIdentityProvider fetches an identity provider's discovery document and key set as serve
// would at start-up, and renders one check line.
func checkIdentityProvider(ctx context.Context, cat *catalog.Catalog, name string) checkLine {
	l := checkLine{Key: "identity.secrets.oidc." + name + ".issuer", Where: cat.Config().OIDC[name].Issuer}
	if _, err := identityProvider(ctx, cat, name); err != nil {
		l.Detail, l.Kind = err.Error(), "unavailable"
		return l
	}
	l.OK, l.Detail = true, "discovery and key set fetched"
	return l
}

// checkTracing reports the tracing the OTEL_* environment asks of serve: what serve would refuse at
// start fails here. The collector is not contacted (spans are sent in batches, later).
func checkTracing() checkLine {
	l := checkLine{Key: "tracing", Where: tracingEndpoint()}
	protocol, err := tracingProtocol()
	if err != nil {
		l.Detail, l.Kind = err.Error(), "invalid_config"
		return l
	}
	l.OK, l.Detail = true, "OTLP over "+protocol
	return l
}

// checkSessionStore connects to the shared session store (Redis or PostgreSQL) as serve would, and
// renders one check line. The URL is shown without its password.
func checkSessionStore(ctx context.Context, cat *catalog.Catalog) checkLine {
	st, key, shown, err := openSharedStore(ctx, cat)
	var se *pgstore.SchemaError
	if errors.As(err, &se) && se.Found < se.Want && !cat.Config().Session.PostgresNoMigrate {
		what := fmt.Sprintf("tables at schema version %d: serve takes them to %d at start-up", se.Found, se.Want)
		if se.Found == 0 {
			what = fmt.Sprintf("no tables yet: serve creates them (schema version %d) at start-up", se.Want)
		}
		return checkLine{Key: key, Where: shown, OK: true, Detail: fmt.Sprintf("connected, %s, with a role that may (or run \"provider-host migrate\")", what)}
	}
	if err != nil {
		return checkLine{Key: key, Where: shown, Detail: err.Error(), Kind: provider.KindName(provider.KindOf(err))}
	}
	defer st.Close()
	schema := ""
	if ps, ok := st.(*pgstore.Store); ok {
		schema = fmt.Sprintf("schema version %d, ", ps.Schema().Version)
	}
	if rs, ok := st.(*redisstore.Store); ok && rs.Evicting() != "" {
		schema = "MAY EVICT KEYS (" + rs.Evicting() + "; allowed by identity.session.redis_allow_eviction), "
	}
	// The revocation feed as every replica's cache would subscribe to it: without it (a Redis user
	// without the channel) the store works, and revocations reach other replicas at revalidation.
	feed := "revocation feed on"
	stop, err := st.SubscribeRevocations(ctx, func(session.Revocation) {})
	if err != nil {
		feed = "revocation feed OFF: " + err.Error()
	} else {
		stop()
	}
	// The deny list of signing keys (revoke-key): an active key on it would stop every start and
	// refresh.
	revoked := ""
	rs, err := st.RevokedKeys(ctx, time.Now())
	if err != nil {
		return checkLine{Key: key, Where: shown, Detail: "revoked signing keys unreadable: " + err.Error(), Kind: provider.KindName(provider.KindOf(err))}
	}
	if len(rs) > 0 {
		revoked = fmt.Sprintf(", %d signing key(s) revoked", len(rs))
		if ks, err := cat.SigningKeys(ctx, config.SessionSigningKey); err == nil {
			for _, r := range rs {
				if r.KeyID == ks.ActiveID {
					return checkLine{Key: key, Where: shown, Kind: "invalid_config", Detail: fmt.Sprintf(
						"the active signing key %s is revoked (until %s): serve would sign nothing; rotate identity.secrets.%s at its provider",
						r.KeyID, r.Until.UTC().Format(time.RFC3339), config.SessionSigningKey)}
				}
			}
		}
	}
	return checkLine{Key: key, Where: shown, OK: true, Detail: fmt.Sprintf("connected, %s%s%s", schema, feed, revoked)}
}

func newGetCmd() *cobra.Command {
	var (
		f      configFlags
		reveal bool
	)
	cmd := &cobra.Command{
		Use:   "get KEY --config FILE",
		Short: "Show where a key's material lives and its metadata (the value only with --reveal)",
		Long: `Resolve one logical key (e.g. session_signing, oidc.google.client_id, identity.credentials.orders)
and print its provider, location and metadata: kids, algorithms, versions and validity for a key set;
version and length for a secret; username and lease for credentials (the lease is revoked at once).
With --reveal, also print the value: the secret, the active private key as PEM, or the password.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, func(ctx context.Context, cat *catalog.Catalog) error {
				return get(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), cat, args[0], reveal)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&reveal, "reveal", false, "print the secret value too")
	return cmd
}

func get(ctx context.Context, out, stderr io.Writer, cat *catalog.Catalog, key string, reveal bool) error {
	b, cl, err := cat.Resolve(key)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitCode(exitFailing)
	}
	fmt.Fprintf(out, "key:      %s\nprovider: %s\nlocation: %s\nkind:     %s\n", b.Key, b.Provider, b.Location, b.Kind)
	fail := func(err error) error {
		fmt.Fprintln(stderr, err)
		return exitCode(exitFailing)
	}
	switch b.Kind {
	case "keyset":
		ks, err := cl.SigningKeys(ctx, b.Location)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(out, "active:   %s\n", ks.ActiveID)
		for _, k := range ks.Keys {
			fmt.Fprintf(out, "key:      kid=%s alg=%s version=%s not_before=%s not_after=%s\n",
				k.ID, k.Algorithm, dash(k.Version), ts(k.NotBefore), ts(k.NotAfter))
		}
		if reveal {
			active, _ := ks.Active()
			switch {
			case active.Algorithm == "HS256":
				fmt.Fprintf(out, "value:    %x\n", active.Private.Reveal())
			case !active.Private.IsZero():
				fmt.Fprint(out, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: active.Private.Reveal()})))
			default:
				fmt.Fprintln(out, "value:    (the private key never leaves the provider)")
			}
		}
	case "secret":
		s, err := cl.Secret(ctx, b.Location)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(out, "version:  %s\ncreated:  %s\nlength:   %d bytes\n", dash(s.Version), ts(s.CreatedAt), s.Value.Len())
		if reveal {
			fmt.Fprintf(out, "value:    %s\n", s.Value.RevealString())
		}
	case "credentials":
		role := strings.TrimPrefix(b.Key, "identity.credentials.")
		cr, cl, err := cat.Credentials(ctx, role, providerNone)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(out, "username: %s\nlease:    %s\nextra:    %v\n", cr.Username, cr.Lease, cr.ExtraKeys())
		if reveal {
			fmt.Fprintf(out, "password: %s\n", cr.Password.RevealString())
		}
		if !cr.Lease.IsZero() {
			if err := cl.Revoke(ctx, cr.Lease); err != nil {
				fmt.Fprintln(stderr, "revoking the lease:", err)
			}
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newMigrateCmd() *cobra.Command {
	var (
		f     configFlags
		owner string
	)
	cmd := &cobra.Command{
		Use:   "migrate --config FILE [--postgres-url URL]",
		Short: "Create the PostgreSQL session store's tables, or bring them to this release's schema",
		Long: `Connect to the PostgreSQL session store of the configuration (identity.session.postgres_url) and
create its tables, or take them to this release's schema version, as serve does at start-up unless
identity.session.postgres_migrate is false. Each step runs once, in one transaction, under a lock
that replicas starting at the same time share. Run it before a rollout when the replicas' role may
only read and write the tables; --postgres-url connects as a role that may change them instead
(their owner; its password in the URL or in PGPASSWORD), without changing the configuration.

Exit status: 0 when the tables are at a version this release uses, 1 when they could not be
brought there, 2 when the configuration is invalid or has no PostgreSQL store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, func(ctx context.Context, cat *catalog.Catalog) error {
				cfg := cat.Config()
				if cfg.Session.PostgresURL == "" {
					fmt.Fprintln(cmd.ErrOrStderr(), "identity.session.postgres_url is not set: only the PostgreSQL session store has tables to migrate")
					return exitCode(exitInvalidConfig)
				}
				c, err := pgstore.Configured(ctx, cfg, cat)
				if err != nil {
					fmt.Fprintln(cmd.OutOrStdout(), "FAIL identity.session.postgres_url ", err)
					return exitCode(exitFailing)
				}
				key, shown := "identity.session.postgres_url", pgstore.RedactedURL(c.URL)
				if owner != "" {
					key, shown = "--postgres-url", pgstore.RedactedURL(owner)
					c.URL, c.Password = owner, nil
				}
				c.DisableMigration, c.CleanupInterval = false, -1
				s, err := pgstore.New(ctx, c)
				if err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "FAIL %s  %s  %v\n", key, shown, err)
					return exitCode(exitFailing)
				}
				defer s.Close()
				sc := s.Schema()
				var what string
				switch {
				case sc.Created:
					what = fmt.Sprintf("tables created at schema version %d", sc.Version)
				case sc.Migrated > 0:
					what = fmt.Sprintf("schema version %d → %d", sc.Migrated, sc.Version)
				case sc.Version > pgstore.SchemaVersion:
					what = fmt.Sprintf("schema version %d, newer than this release's %d and usable by it: nothing to do", sc.Version, pgstore.SchemaVersion)
				default:
					what = fmt.Sprintf("schema version %d: nothing to do", sc.Version)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok   %s  %s  %s\n", key, shown, what)
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&owner, "postgres-url", "", "connect as this role (one that may change the tables) instead of identity.session.postgres_url's")
	return cmd
}

func newEndSessionsCmd() *cobra.Command {
	var (
		f            configFlags
		subject, idp string
		only         []string
	)
	cmd := &cobra.Command{
		Use:   "end-sessions --config FILE --subject SUBJECT [--idp NAME] [--session ID ...]",
		Short: "End every session of a subject in the shared session store (break glass: no runtime call)",
		Long: `End every session of SUBJECT (at identity provider NAME, or at every one) in the shared session
store of the configuration (identity.session.redis_url or postgres_url), as the runtime's
EndSubjectSessions does, but straight on the store, with the store's credentials instead of a
session the policy allows: for an incident where no such session is at hand. Each live session's
refresh-token family is revoked, every replica's cached sessions of it end at once with their
leases (the store's revocation feed), and the ID tokens that started them cannot start new ones.
Without --session, the subject is also cut for identity.session.subject_cut_ttl (a day by
default): every token of it issued until now that no session stands for ends too, wherever it is
checked against the store (ID tokens of NAME, or of every identity provider and bare tokens of
IssueIdentityToken without --idp).
One line per session ended goes to stdout, and an audit record to stderr.

Exit status: 0 when the store answered (whether or not there were sessions to end), 1 when it did
not, 2 when the configuration is invalid or has no shared store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.runOnStore(cmd, subject, func(ctx context.Context, store sharedStore, cfg *config.Config) error {
				end, err := session.EndSubject(ctx, store, session.SubjectSelector{Subject: subject, IdP: idp, Only: only}, time.Now(), cfg.Session.SubjectCutTTL)
				ids := make([]string, 0, len(end.Ended))
				for _, fam := range end.Ended {
					ids = append(ids, fam.SessionID)
					fmt.Fprintf(cmd.OutOrStdout(), "ended session=%s subject=%s tenant=%s idp=%s\n", fam.SessionID, fam.Subject, fam.Tenant, fam.IdP)
				}
				audit := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
				outcome := "ok"
				if err != nil {
					outcome = "unavailable"
				}
				audit.Info("keyfort: audit", slog.String("event", "session.end_subject"), slog.String("outcome", outcome),
					slog.String("via", "provider-host end-sessions"), slog.String("for_subject", subject), slog.String("for_idp", idp),
					slog.Any("sessions", ids), slog.Bool("tokens_cut", !end.CutBefore.IsZero()))
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					return exitCode(exitFailing)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d session(s) ended\n", len(end.Ended))
				if !end.CutBefore.IsZero() {
					fmt.Fprintf(cmd.OutOrStdout(), "subject cut: its other tokens issued before %s are refused\n", end.CutBefore.UTC().Format(time.RFC3339))
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "the subject whose sessions end (required)")
	cmd.Flags().StringVar(&idp, "idp", "", "only its sessions at this identity provider (default: at every one)")
	cmd.Flags().StringSliceVar(&only, "session", nil, "only these sessions (IDs as list-sessions prints them; repeat or comma-separate; default: every one)")
	return cmd
}

func newListSessionsCmd() *cobra.Command {
	var (
		f            configFlags
		subject, idp string
	)
	cmd := &cobra.Command{
		Use:   "list-sessions --config FILE --subject SUBJECT [--idp NAME]",
		Short: "List the live sessions of a subject in the shared session store",
		Long: `List the live sessions of SUBJECT (at identity provider NAME, or at every one) in the shared
session store of the configuration (identity.session.redis_url or postgres_url), as the runtime's
ListSubjectSessions does, straight on the store: one line per session (its id, tenant, identity
provider, scope, when its current refresh token was issued, when it expires), for instance before
"provider-host end-sessions". No token is printed.

Exit status: 0 when the store answered, 1 when it did not, 2 when the configuration is invalid or
has no shared store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.runOnStore(cmd, subject, func(ctx context.Context, store sharedStore, _ *config.Config) error {
				fams, err := store.SubjectFamilies(ctx, session.SubjectSelector{Subject: subject, IdP: idp}, time.Now())
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					return exitCode(exitFailing)
				}
				out := cmd.OutOrStdout()
				for _, fam := range fams {
					fmt.Fprintf(out, "session=%s subject=%s tenant=%s idp=%s scope=%q last_refresh=%s expires=%s\n", fam.SessionID, fam.Subject,
						fam.Tenant, fam.IdP, fam.Scope, fam.CurrentIssuedAt.UTC().Format(time.RFC3339), fam.ExpiresAt.UTC().Format(time.RFC3339))
				}
				fmt.Fprintf(out, "%d session(s)\n", len(fams))
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "the subject whose sessions to list (required)")
	cmd.Flags().StringVar(&idp, "idp", "", "only its sessions at this identity provider (default: at every one)")
	return cmd
}

func newRevokeKeyCmd() *cobra.Command {
	var (
		f    configFlags
		forD time.Duration
		list bool
	)
	cmd := &cobra.Command{
		Use:   "revoke-key KID --config FILE [--for DURATION] | revoke-key --list --config FILE",
		Short: "Revoke a leaked session signing key on every replica at once (break glass)",
		Long: `Revoke the session signing key KID (its kid, as the JWKS and the tokens' headers name it) in the
shared session store of the configuration (identity.session.redis_url or postgres_url): every
replica, and every service verifying access tokens with the store's deny list, refuses the tokens
it signed from now on, ends the sessions it holds of them (with their leases), and no longer
publishes the key in its JWKS. A revoked active key signs nothing: the replicas cannot start or
refresh sessions until the key is rotated at its provider, so rotate first (a new key active),
then revoke the old one, then delete it at its provider.
The revocation lasts --for (default identity.session.refresh_ttl, the longest a token lives), then
the store forgets it. With --list, print the revocations in force.

Exit status: 0 when the store answered, 1 when it did not, 2 when the configuration is invalid or
has no shared store.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if list == (len(args) == 1) {
				return errors.New("give a KID to revoke, or --list")
			}
			return f.runWithStore(cmd, func(ctx context.Context, store sharedStore, cat *catalog.Catalog) error {
				out := cmd.OutOrStdout()
				if list {
					rs, err := store.RevokedKeys(ctx, time.Now())
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						return exitCode(exitFailing)
					}
					slices.SortFunc(rs, func(a, b session.KeyRevocation) int { return strings.Compare(a.KeyID, b.KeyID) })
					for _, r := range rs {
						fmt.Fprintf(out, "revoked kid=%s until=%s\n", r.KeyID, r.Until.UTC().Format(time.RFC3339))
					}
					fmt.Fprintf(out, "%d key(s) revoked\n", len(rs))
					return nil
				}
				kid := args[0]
				d := forD
				if d <= 0 {
					d = cmp.Or(cat.Config().Session.RefreshTTL, session.DefaultRefreshTTL)
				}
				until := time.Now().Add(d)
				err := session.RevokeKey(ctx, store, kid, until)
				audit := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
				outcome := "ok"
				if err != nil {
					outcome = "unavailable"
				}
				audit.Info("keyfort: audit", slog.String("event", "session.revoke_key"), slog.String("outcome", outcome),
					slog.String("via", "provider-host revoke-key"), slog.String("kid", kid), slog.Time("until", until))
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					return exitCode(exitFailing)
				}
				fmt.Fprintf(out, "revoked kid=%s until=%s: every replica sharing the store refuses the tokens it signed\n", kid, until.UTC().Format(time.RFC3339))
				ks, kerr := cat.SigningKeys(ctx, config.SessionSigningKey)
				switch {
				case kerr != nil:
					fmt.Fprintf(out, "warning: the signing keys could not be read (%v): check that %s is not the active key\n", kerr, kid)
				case ks.ActiveID == kid:
					fmt.Fprintf(out, "warning: %s is the active signing key: no session can start or refresh until it is rotated at its provider\n", kid)
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&forD, "for", 0, "how long the revocation lasts (default identity.session.refresh_ttl; shorter lets the key's unexpired tokens work again after it while the key is still at its provider)")
	cmd.Flags().BoolVar(&list, "list", false, "print the revocations in force instead")
	return cmd
}

// runOnStore is run for the commands on a subject's sessions in the shared store.
func (f *configFlags) runOnStore(cmd *cobra.Command, subject string, fn func(ctx context.Context, store sharedStore, cfg *config.Config) error) error {
	if subject == "" {
		return errors.New("--subject is required")
	}
	return f.runWithStore(cmd, func(ctx context.Context, store sharedStore, cat *catalog.Catalog) error {
		return fn(ctx, store, cat.Config())
	})
}

// runWithStore is run with the configuration's shared session store opened for fn (and closed after).
func (f *configFlags) runWithStore(cmd *cobra.Command, fn func(ctx context.Context, store sharedStore, cat *catalog.Catalog) error) error {
	return f.run(cmd, func(ctx context.Context, cat *catalog.Catalog) error {
		store, err := openAdminStore(ctx, cmd, cat)
		if err != nil {
			return err
		}
		defer store.Close()
		return fn(ctx, store, cat)
	})
}

// openAdminStore is openSharedStore for end-sessions and list-sessions, reporting what stops it on
// stderr with the exit status.
func openAdminStore(ctx context.Context, cmd *cobra.Command, cat *catalog.Catalog) (sharedStore, error) {
	store, key, _, err := openSharedStore(ctx, cat)
	if key == "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "no shared session store (identity.session.redis_url or postgres_url): a single replica keeps its sessions in its memory; use its ListSubjectSessions and EndSubjectSessions calls")
		return nil, exitCode(exitInvalidConfig)
	}
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", key, err)
		return nil, exitCode(exitFailing)
	}
	return store, nil
}
