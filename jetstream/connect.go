package jetstream

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// ConnConfig says how to reach an external NATS server or cluster and how to
// authenticate. Set at most one of the credential methods: User/Password,
// Token, NKeySeedFile or CredsFile.
type ConnConfig struct {
	// URL is one or more server URLs, comma separated. Defaults to
	// nats://127.0.0.1:4222.
	URL string
	// Name identifies the connection in server monitoring. Defaults to
	// "omniq".
	Name string
	// User and Password authenticate with a username and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// NKeySeedFile is the path of an nkey seed file (nk authentication).
	NKeySeedFile string
	// CredsFile is the path of a .creds file holding a user JWT and its seed
	// (decentralised JWT authentication).
	CredsFile string
	// TLSCAFile is a PEM file of CAs to verify the server with.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and its key, for
	// servers that verify clients.
	TLSCertFile, TLSKeyFile string
	// InboxPrefix replaces the _INBOX prefix of reply subjects, for users
	// whose permissions give them their own inboxes (OmniQ's operators and
	// runners). Defaults to _INBOX.
	InboxPrefix string
	// OnError, when set, is also called with every asynchronous error, such
	// as a permissions violation the server reported for a publish or a
	// subscription (a denied request otherwise just times out).
	OnError func(error)
	// ConnectTimeout bounds each connection attempt. Defaults to 5 seconds.
	ConnectTimeout time.Duration
	// Logger receives disconnect, reconnect and error events. Defaults to
	// discarding them.
	Logger logrus.FieldLogger
}

// pingInterval is how often a connection pings its server; after
// maxPingsOut pings unanswered it is stale, and reconnects (to another
// server of a cluster when there is one). nats.go's default of 2 minutes
// left a runner on a server that stopped answering (hung, or cut off by a
// partition that keeps its TCP connections up) for 4 to 6 minutes, running
// nothing; this leaves it after 20 to 30 seconds, long enough for a busy
// server's pause not to count.
const (
	pingInterval = 10 * time.Second
	maxPingsOut  = 2
)

// Connect dials the server(s) in cfg with the configured authentication. The
// connection reconnects forever after it was once established, and leaves
// a server that stops answering its pings for 20 to 30 seconds; every
// disconnect, reconnect and asynchronous error is logged.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	if cfg.URL == "" {
		cfg.URL = nats.DefaultURL
	}
	if cfg.Name == "" {
		cfg.Name = "omniq"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = Config{}.WithDefaults().Logger
	}
	methods := 0
	for _, set := range []bool{cfg.User != "" || cfg.Password != "", cfg.Token != "", cfg.NKeySeedFile != "", cfg.CredsFile != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return nil, fmt.Errorf("%w: connect: use one of user/password, token, nkey seed or creds file, not %d of them", ErrInvalidConfig, methods)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: connect: a TLS client certificate needs both the cert and the key file", ErrInvalidConfig)
	}
	var lastURL atomic.Value // string: the server connected to last
	lastURL.Store("")
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() { // closed by its owner, not lost
				log.WithField("url", lastURL.Load()).Debug("connection to NATS closed")
				return
			}
			// The connection has no server any more: name the one lost.
			log.WithError(err).WithField("url", lastURL.Load()).Warn("disconnected from NATS")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			lastURL.Store(nc.ConnectedUrlRedacted())
			log.WithField("url", nc.ConnectedUrlRedacted()).Info("reconnected to NATS")
		}),
		nats.ErrorHandler(AsyncErrorHandler(log, cfg.OnError)),
	}
	switch {
	case cfg.User != "" || cfg.Password != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("connect: nkey seed %s: %w", cfg.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(cfg.URL), err)
	}
	lastURL.CompareAndSwap("", nc.ConnectedUrlRedacted()) // unless a reconnect came first
	return nc, nil
}

// redactURL hides passwords in URLs that are logged or returned in errors.
func redactURL(u string) string {
	out := []byte(u)
	// nats://user:pass@host -> nats://user:xxxxx@host, for each URL in a list.
	for i := 0; i < len(out); i++ {
		if out[i] == '@' {
			j := i - 1
			for j >= 0 && out[j] != ':' && out[j] != '/' && out[j] != ',' {
				j--
			}
			if j >= 0 && out[j] == ':' {
				return string(out[:j+1]) + "xxxxx" + redactURL(string(out[i:]))
			}
		}
	}
	return string(out)
}

// isTransient reports whether err is worth retrying: JetStream said it is
// temporarily unavailable (leader election, catch-up), a request timed out
// without an answer, no stream answered a publish (a stream's leader is
// changing: the fault suite saw outcomes lost to it), or a replicated
// stream was still storing another publish with a publish's message id
// (asked again, it answers the duplicate).
func isTransient(err error) bool {
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		// 503: JetStream is not available for a moment; a duplicate in
		// process: ask again for the duplicate's answer.
		return apiErr.Code == 503 || apiErr.ErrorCode == errCodeDuplicateInProcess
	}
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, natsjs.ErrNoHeartbeat) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, natsjs.ErrNoStreamResponse)
}

// asyncErrorEvery is how often one kind of asynchronous error on one
// subscription is logged; repeats in between are counted.
const asyncErrorEvery = 10 * time.Second

// AsyncErrorHandler returns a handler for a connection's asynchronous
// errors (nats.ErrorHandler): a permissions violation, a slow consumer.
// It logs each to log with the subscription's subject, at most once per
// subject and error every 10 seconds, the next line counting the repeats
// (a client that floods a subscription makes it a slow consumer over and
// over), and calls onError, when not nil, with every one. Connect uses
// it; give it to a connection made otherwise (an in-process one) so its
// errors reach the log instead of nats.go's default, the process's stderr.
func AsyncErrorHandler(log logrus.FieldLogger, onError func(error)) nats.ErrHandler {
	return newAsyncErrorHandler(log, onError, asyncErrorEvery, time.Now)
}

func newAsyncErrorHandler(log logrus.FieldLogger, onError func(error), every time.Duration, now func() time.Time) nats.ErrHandler {
	type seen struct {
		at       time.Time
		repeated int
	}
	var mu sync.Mutex
	last := make(map[string]*seen)
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if onError != nil {
			onError(err)
		}
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		key := subject + "\x00" + err.Error()
		mu.Lock()
		s, t := last[key], now()
		if s != nil && t.Sub(s.at) < every {
			s.repeated++
			mu.Unlock()
			return
		}
		repeated := 0
		if s != nil {
			repeated = s.repeated
		}
		if len(last) >= 1024 {
			clear(last) // many subjects: start counting afresh
		}
		last[key] = &seen{at: t}
		mu.Unlock()
		e := log.WithError(err)
		if subject != "" {
			e = e.WithField("subject", subject)
		}
		if repeated > 0 {
			e = e.WithField("repeated", repeated)
		}
		e.Error("NATS asynchronous error")
	}
}
