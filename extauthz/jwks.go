package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

// issuerKeys holds one issuer's current keys and keeps them fresh. Requests only read the
// published set; they never wait for a fetch. One goroutine (run) does every fetch, so a flood of
// unknown kids costs at most one fetch per cooldown.
type issuerKeys struct {
	cfg     config.Issuer
	source  keySource
	log     *slog.Logger
	metrics *metrics

	cur       atomic.Pointer[keySet] // nil until the first successful load
	wake      chan struct{}          // an unknown kid asks for a refresh; buffered, never blocks
	lastAsked atomic.Int64           // unix nanos of the last accepted refresh request
	fetchedAt atomic.Int64           // unix nanos of the last fetch that succeeded (keys confirmed current)
	now       func() time.Time
	onRevoke  func() // called after a refresh revoked keys
}

// keySource fetches an issuer's JWKS document. changed reports whether the document may differ
// from the last one (file sources answer false when the file is untouched).
type keySource interface {
	fetch(ctx context.Context) (doc []byte, changed bool, err error)
	// poll is how often run looks at the source when nothing asks it to.
	poll() time.Duration
}

func newIssuerKeys(cfg config.Issuer, client *http.Client, log *slog.Logger, m *metrics, now func() time.Time) *issuerKeys {
	k := &issuerKeys{cfg: cfg, log: log.With(slog.String("issuer", cfg.Issuer)), metrics: m, wake: make(chan struct{}, 1), now: now}
	limit := int64(cfg.MaxJWKSBytes)
	switch cfg.KeySource() {
	case "jwks_url":
		k.source = &urlSource{client: client, url: cfg.JWKSURL, limit: limit, every: cfg.RefreshInterval.D()}
	case "discovery":
		k.source = &discoverySource{urlSource: urlSource{client: client, limit: limit, every: cfg.RefreshInterval.D()}, issuer: cfg.Issuer}
	case "jwks_file":
		k.source = &fileSource{path: cfg.JWKSFile, limit: limit}
	case "hmac_secret":
		key := &Key{Issuer: cfg.Issuer, public: []byte(cfg.HMACSecret.Value())}
		k.cur.Store(newKeySet([]*Key{key}))
	}
	return k
}

// keys returns the current set, or nil when none was ever loaded.
func (k *issuerKeys) keys() *keySet { return k.cur.Load() }

// askRefresh requests a refresh for an unknown kid: at most one per cooldown, never blocking.
func (k *issuerKeys) askRefresh() {
	if k.source == nil {
		return
	}
	now := k.now().UnixNano()
	last := k.lastAsked.Load()
	if now-last < int64(k.cfg.UnknownKIDCooldown.D()) || !k.lastAsked.CompareAndSwap(last, now) {
		return
	}
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// run loads the keys at once, then refreshes them on the source's interval and on request, until
// ctx ends. A failed load keeps the last good keys and is retried with backoff.
func (k *issuerKeys) run(ctx context.Context) error {
	if k.source == nil {
		return nil
	}
	retry := time.Second
	for {
		wait := k.source.poll()
		if err := k.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			k.log.Warn("jwks refresh failed; keeping last good keys", slog.Any("error", err), slog.Duration("retry", retry))
			wait = min(retry, wait)
			retry = min(retry*2, k.cfg.RefreshInterval.D())
		} else {
			retry = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-k.wake:
			t.Stop()
		}
	}
}

func (k *issuerKeys) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.FetchTimeout.D())
	defer cancel()
	doc, changed, err := k.source.fetch(ctx)
	if err != nil {
		k.metrics.refreshes.WithLabelValues(k.cfg.Issuer, "error").Inc()
		return err
	}
	if !changed {
		k.fetchedAt.Store(k.now().UnixNano())
		return nil
	}
	fresh, skipped, err := parseJWKS(doc, k.cfg.Issuer, k.cfg.Algorithms)
	if err != nil {
		k.metrics.refreshes.WithLabelValues(k.cfg.Issuer, "error").Inc()
		return err
	}
	kept, gone := merge(k.cur.Load(), fresh)
	k.cur.Store(newKeySet(kept))
	for _, g := range gone {
		g.revoked.Store(true)
	}
	if len(gone) > 0 && k.onRevoke != nil {
		k.onRevoke()
	}
	k.fetchedAt.Store(k.now().UnixNano())
	k.metrics.refreshes.WithLabelValues(k.cfg.Issuer, "ok").Inc()
	k.metrics.keys.WithLabelValues(k.cfg.Issuer).Set(float64(len(kept)))
	if len(gone) > 0 || skipped > 0 {
		k.log.Info("jwks refreshed", slog.Int("keys", len(kept)), slog.Int("removed", len(gone)), slog.Int("skipped", skipped))
	}
	return nil
}

// urlSource fetches a JWKS over https.
type urlSource struct {
	client *http.Client
	url    string
	limit  int64
	every  time.Duration
}

func (s *urlSource) poll() time.Duration { return s.every }

func (s *urlSource) fetch(ctx context.Context) ([]byte, bool, error) {
	doc, err := get(ctx, s.client, s.url, s.limit)
	return doc, err == nil, err
}

// get fetches an https URL with a size cap.
func get(ctx context.Context, client *http.Client, rawURL string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: status %d", rawURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("fetch %s: response larger than %d bytes", rawURL, limit)
	}
	return body, nil
}

// discoverySource finds the JWKS URL through OpenID Connect discovery on the configured issuer,
// then fetches it like urlSource. The document must name the same issuer (OIDC Discovery 4.3).
type discoverySource struct {
	urlSource
	issuer string
}

func (s *discoverySource) fetch(ctx context.Context) ([]byte, bool, error) {
	if s.url == "" {
		u, err := s.discover(ctx)
		if err != nil {
			return nil, false, err
		}
		s.url = u
	}
	doc, err := get(ctx, s.client, s.url, s.limit)
	if err != nil {
		s.url = "" // discover again next time: the provider may have moved its keys
		return nil, false, err
	}
	return doc, true, nil
}

func (s *discoverySource) discover(ctx context.Context) (string, error) {
	body, err := get(ctx, s.client, strings.TrimSuffix(s.issuer, "/")+"/.well-known/openid-configuration", s.limit)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	if meta.Issuer != s.issuer {
		return "", errors.New("oidc discovery: the document names another issuer")
	}
	u, err := url.Parse(meta.JWKSURI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", errors.New("oidc discovery: jwks_uri is not an https URL")
	}
	return meta.JWKSURI, nil
}

// fileSource reads a local JWKS file, again whenever its size or modification time changes.
type fileSource struct {
	path  string
	limit int64
	seen  os.FileInfo
}

func (s *fileSource) poll() time.Duration { return time.Second }

func (s *fileSource) fetch(context.Context) ([]byte, bool, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, false, fmt.Errorf("jwks file: %w", err)
	}
	if s.seen != nil && fi.Size() == s.seen.Size() && fi.ModTime().Equal(s.seen.ModTime()) {
		return nil, false, nil
	}
	if fi.Size() > s.limit {
		return nil, false, fmt.Errorf("jwks file %s: larger than %d bytes", s.path, s.limit)
	}
	doc, err := os.ReadFile(s.path)
	if err != nil {
		return nil, false, fmt.Errorf("jwks file: %w", err)
	}
	s.seen = fi
	return doc, true, nil
}
