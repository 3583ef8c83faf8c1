package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Log lines about unauthenticated clients are written on their behalf, so a
// flood of connections must not become a flood of log lines, and the text a
// client chose (its login name, a certificate's key id, an error quoting its
// bytes) must not reach the log unbounded or with control characters in it.
// prelog returns the logger for such lines: it passes preLogBurst lines at
// once and preLogRate lines per second after that; the lines it drops are
// counted and reported, with their count, in the next line that passes (and
// by a timer once the flood stops). Every string value is escaped and cut.
const (
	preLogRate  = 10 // lines per second, sustained
	preLogBurst = 50
	// maxLoginLog is how much of a client-chosen name (login, key id,
	// principal) the log keeps; maxValueLog, of any other value.
	maxLoginLog = 64
	maxValueLog = 256
)

// preLogState is the server's pre-login logger, made on first use.
type preLogState struct {
	once sync.Once
	log  *slog.Logger
}

func (s *Server) prelog() *slog.Logger {
	s.prelogger.once.Do(func() {
		s.prelogger.log = slog.New(newPreLogHandler(s.log().Handler(), preLogRate, preLogBurst, time.Second))
	})
	return s.prelogger.log
}

// preLogBucket is the token bucket shared by every logger derived from one
// preLogHandler.
type preLogBucket struct {
	mu         sync.Mutex
	tokens     float64
	rate       float64 // tokens per second
	burst      float64
	last       time.Time
	suppressed int
	flush      *time.Timer // reports a count when no line follows the flood
	quiet      time.Duration
	out        slog.Handler // where the "suppressed" line goes
	now        func() time.Time
}

type preLogHandler struct {
	inner  slog.Handler
	bucket *preLogBucket
}

func newPreLogHandler(inner slog.Handler, rate, burst int, quiet time.Duration) *preLogHandler {
	return &preLogHandler{inner: inner, bucket: &preLogBucket{
		tokens: float64(burst), rate: float64(rate), burst: float64(burst),
		quiet: quiet, out: inner, now: time.Now,
	}}
}

func (h *preLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *preLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = cleanAttr(a)
	}
	return &preLogHandler{inner: h.inner.WithAttrs(clean), bucket: h.bucket}
}

func (h *preLogHandler) WithGroup(name string) slog.Handler {
	return &preLogHandler{inner: h.inner.WithGroup(name), bucket: h.bucket}
}

func (h *preLogHandler) Handle(ctx context.Context, r slog.Record) error {
	dropped, ok := h.bucket.take()
	if !ok {
		return nil
	}
	if dropped > 0 {
		h.bucket.report(ctx, dropped)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(cleanAttr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// take spends a token. It returns false when the line is to be dropped, and
// otherwise the number of lines dropped since the last one that passed.
func (b *preLogBucket) take() (dropped int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		if b.flush == nil {
			b.flush = time.AfterFunc(b.quiet, b.flushNow)
		}
		return 0, false
	}
	b.tokens--
	dropped, b.suppressed = b.suppressed, 0
	return dropped, true
}

// flushNow reports lines dropped when no line came after them.
func (b *preLogBucket) flushNow() {
	b.mu.Lock()
	n := b.suppressed
	b.suppressed, b.flush = 0, nil
	b.mu.Unlock()
	if n > 0 {
		b.report(context.Background(), n)
	}
}

func (b *preLogBucket) report(ctx context.Context, n int) {
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "log lines about unauthenticated clients suppressed (rate limit)", 0)
	r.AddAttrs(slog.Int("suppressed", n), slog.Int("per_second", int(b.rate)), slog.Int("burst", int(b.burst)))
	b.out.Handle(ctx, r)
}

// cleanAttr escapes and cuts string values (and errors, which often quote
// what the client sent).
func cleanAttr(a slog.Attr) slog.Attr {
	limit := maxValueLog
	switch a.Key {
	case "login", "user", "key_id", "principal":
		limit = maxLoginLog
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, logSafe(v.String(), limit))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, logSafe(err.Error(), limit))
		}
		if st, ok := v.Any().(fmt.Stringer); ok {
			return slog.String(a.Key, logSafe(st.String(), limit))
		}
	case slog.KindGroup:
		as := v.Group()
		clean := make([]any, len(as))
		for i, g := range as {
			clean[i] = cleanAttr(g)
		}
		return slog.Group(a.Key, clean...)
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// logSafe escapes non-printable runes and invalid UTF-8 as Go does in a
// quoted string (without the quotes) and keeps at most limit bytes of the
// result, marking a cut with "…(N bytes)".
func logSafe(s string, limit int) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) || r == '\\' {
			clean = false
			break
		}
	}
	out := s
	if !clean {
		q := strconv.Quote(s)
		out = q[1 : len(q)-1]
	}
	if len(out) <= limit {
		return out
	}
	// Cut on a rune or escape boundary, never inside one.
	cut := 0
	for cut < len(out) {
		n := escapeLen(out[cut:])
		if cut+n > limit {
			break
		}
		cut += n
	}
	return out[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// escapeLen is the length of the first rune or strconv escape in s.
func escapeLen(s string) int {
	if s[0] != '\\' || len(s) < 2 {
		_, n := utf8.DecodeRuneInString(s)
		return n
	}
	switch s[1] {
	case 'x':
		return min(4, len(s))
	case 'u':
		return min(6, len(s))
	case 'U':
		return min(10, len(s))
	}
	return 2
}
