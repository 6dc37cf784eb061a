package provisioner_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/dns"
	"github.com/tenantgate/tenantgate/provisioner/kube/kubetest"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

// env is one test's world: a fresh database (the provisioner's state and the shared tenant
// database), the same Postgres server for bridge and silo databases (named with a prefix of the
// test's own, dropped at cleanup), a recording Kubernetes client, a record-only DNS provider, an
// SMTP server on a free port, and the Postgres registry the provisioners share.
type env struct {
	t      testing.TB
	url    string
	db     *pgxpool.Pool
	prefix string
	reg    registry.Registry
	kube   *kubetest.Recorder
	smtp   *smtpServer
	purger *purger
}

func newEnv(t testing.TB) *env {
	t.Helper()
	u := testenv.Database(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Migrate(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenPostgres(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	e := &env{t: t, url: u, db: db, prefix: "tgt" + testenv.Suffix() + "_", reg: reg,
		kube: kubetest.New(), smtp: startSMTP(t), purger: &purger{}}
	t.Cleanup(e.dropDatabases)
	return e
}

// dropDatabases drops every database the test's bridge and silo tenants left.
func (e *env) dropDatabases() {
	for _, name := range e.databases(e.t) {
		testenv.DropDatabase(e.t, name)
	}
}

func (e *env) catalog(t testing.TB, tweak ...func(*steps.Deps)) *steps.Catalog {
	t.Helper()
	d := steps.Deps{
		Registry:   e.reg,
		State:      e.db,
		Shared:     e.db,
		BaseDomain: "tenants.test",
		Databases: config.TenantDatabases{
			PoolSchema:      "tenant_pool",
			NamePrefix:      e.prefix,
			ServerURL:       config.Secret(testenv.DatabaseURL()),
			SiloURLTemplate: config.Secret(strings.Replace(testenv.WithDatabase(testenv.DatabaseURL(), e.prefix+"silo_SLUG"), "SLUG", "{slug}", 1)),
		},
		Kube:       e.kube,
		KubePlans:  config.DefaultKubernetesPlans(),
		KubePrefix: "tenant-",
		DNS:        dns.NewPostgres(e.db, saga.Schema),
		DNSConfig:  config.DNS{Provider: config.DNSRecord, Target: "gateway.tenants.test", TTL: 60},
		Mailer: steps.NewMailer(config.Email{SMTPAddr: e.smtp.addr, From: "Tenantgate <no-reply@tenants.test>",
			InviteURL: "https://{slug}.{domain}/invite?token={token}"}, nil),
		Purger: e.purger,
		Log:    testLogger(t),
	}
	for _, fn := range tweak {
		fn(&d)
	}
	cat, err := steps.NewCatalog(d)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// running is one provisioner process: stop kills it (its context ends, whatever it was doing).
type running struct {
	*provisioner.Provisioner
	stop func()
}

type provOpts struct {
	hook        saga.Hook
	lease       time.Duration
	maxAttempts int
	workers     int
	// registry is the one the provisioner's API uses, when not the env's (the steps keep the env's).
	registry registry.Registry
	// idle: the provisioner runs no saga workers, as an API-only process would.
	idle bool
}

// start runs a new provisioner over the env, as a new process would.
func (e *env) start(t testing.TB, o provOpts) *running {
	t.Helper()
	return e.startWith(t, o)
}

// startWith is start with changes to the steps' dependencies.
func (e *env) startWith(t testing.TB, o provOpts, tweak ...func(*steps.Deps)) *running {
	t.Helper()
	if o.lease == 0 {
		o.lease = 2 * time.Second
	}
	if o.maxAttempts == 0 {
		o.maxAttempts = 2
	}
	if o.workers == 0 {
		o.workers = 4
	}
	if o.registry == nil {
		o.registry = e.reg
	}
	p, err := provisioner.New(provisioner.Options{
		Registry: o.registry, State: e.db, Catalog: e.catalog(t, tweak...),
		KnownPlan: func(p string) bool { _, ok := config.DefaultPlans()[p]; return ok },
		Saga: saga.Options{Workers: o.workers, PollInterval: 20 * time.Millisecond, Lease: o.lease,
			MaxAttempts: o.maxAttempts, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Hook: o.hook},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.idle {
		return &running{Provisioner: p, stop: func() {}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &running{Provisioner: p, stop: stop}
}

// waitSettled waits until the tenant's latest saga is no longer in flight and returns the view.
func waitSettled(t testing.TB, p *provisioner.Provisioner, id string, within time.Duration) provisioner.View {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, err := p.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if v.Saga != nil && !v.Saga.State.InFlight() && v.Tenant.Status != tenant.Pending {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s not settled after %s: status %s, saga %+v", id, within, v.Tenant.Status, v.Saga)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inventory is everything that exists for a tenant outside the registry.
type inventory struct {
	Databases []string // databases on the server with the test's prefix
	Schemas   []string // schemas in the shared database with the test's prefix
	PoolRows  int      // the tenant's rows in the pool schema
	Kube      []string // Kubernetes objects
	DNS       []string // DNS records
	Emails    int      // welcome emails received
}

func (i inventory) empty() bool {
	return len(i.Databases) == 0 && len(i.Schemas) == 0 && i.PoolRows == 0 && len(i.Kube) == 0 && len(i.DNS) == 0 && i.Emails == 0
}

func (e *env) inventory(t testing.TB, spec tenant.Tenant, email string) inventory {
	t.Helper()
	ctx := context.Background()
	var inv inventory
	// The names a tenant's database or schema may have: prefix + slug (hyphens as underscores),
	// or prefix + "silo_" + slug.
	mine := func(name string) bool {
		return name == e.prefix+strings.ReplaceAll(spec.Slug, "-", "_") || name == e.prefix+"silo_"+spec.Slug
	}
	for _, name := range e.databases(t) {
		if mine(name) {
			inv.Databases = append(inv.Databases, name)
		}
	}
	for _, name := range queryStrings(t, e.db, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1`, e.prefix) {
		if mine(name) {
			inv.Schemas = append(inv.Schemas, name)
		}
	}
	for _, table := range []string{"tenant_profile", "users"} {
		var n int
		err := e.db.QueryRow(ctx, `SELECT count(*) FROM tenant_pool.`+table+` WHERE tenant_id = $1`, spec.ID).Scan(&n)
		var missing bool
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			missing = true
		} else if err != nil {
			t.Fatal(err)
		}
		if !missing {
			inv.PoolRows += n
		}
	}
	for _, r := range e.kube.Refs() {
		if r.Namespace == "tenant-"+spec.Slug || r.Name == "tenant-"+spec.Slug {
			inv.Kube = append(inv.Kube, r.String())
		}
	}
	inv.DNS = queryStrings(t, e.db, `SELECT type || ' ' || name || ' ' || target FROM `+saga.Schema+`.dns_records WHERE tenant_id = $1`, spec.ID)
	inv.Emails = len(e.smtp.to(email))
	return inv
}

// databases lists the databases on the server with the test's prefix; t is the (sub)test asking.
func (e *env) databases(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	return queryStrings(t, conn, `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1`, e.prefix)
}

// querier runs a query (a pool or a connection).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryStrings returns the values of a query's one text column.
func queryStrings(t testing.TB, db querier, sql string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return values
}

// purger records the tenants whose counters were purged.
type purger struct {
	mu     sync.Mutex
	purged []string
}

func (p *purger) PurgeTenant(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.purged = append(p.purged, id)
	return nil
}

func (p *purger) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.purged, id)
}

// smtpServer is a real SMTP server on 127.0.0.1 that keeps what it receives.
type smtpServer struct {
	addr string
	mu   sync.Mutex
	msgs []mailMsg
}

type mailMsg struct {
	from string
	to   []string
	data string
}

func startSMTP(t testing.TB) *smtpServer {
	t.Helper()
	s := &smtpServer{}
	srv := gosmtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return s
}

func (s *smtpServer) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &smtpSession{s: s}, nil }

func (s *smtpServer) to(rcpt string) []mailMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mailMsg
	for _, m := range s.msgs {
		if slices.Contains(m.to, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

type smtpSession struct {
	s   *smtpServer
	msg mailMsg
}

func (ss *smtpSession) Reset()        { ss.msg = mailMsg{} }
func (ss *smtpSession) Logout() error { return nil }
func (ss *smtpSession) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.msg.from = from
	return nil
}
func (ss *smtpSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.msg.to = append(ss.msg.to, to)
	return nil
}
func (ss *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.msg.data = string(b)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.msg)
	ss.s.mu.Unlock()
	return nil
}

var tokenInLink = regexp.MustCompile(`invite\?token=([A-Za-z0-9_%\-]+)`)

// invitationToken finds the invitation token in an email.
func invitationToken(t testing.TB, m mailMsg) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(m.data))
	for sc.Scan() {
		if g := tokenInLink.FindStringSubmatch(sc.Text()); g != nil {
			tok, err := url.QueryUnescape(g[1])
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	t.Fatalf("no invitation link in the email:\n%s", m.data)
	return ""
}

func sha(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PROVISIONER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

var errInjected = errors.New("injected fault")

func sortedCopy(s []string) []string { c := slices.Clone(s); sort.Strings(c); return c }

func describe(i inventory) string { return fmt.Sprintf("%+v", i) }

type pgxConn = pgx.Conn

func connect(ctx context.Context, u string) (*pgx.Conn, error) { return pgx.Connect(ctx, u) }
