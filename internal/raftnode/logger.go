package raftnode

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends hashicorp/raft's logs to slog.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l.With("component", name), name: name, level: hclog.Info}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level < a.level {
		return
	}
	a.l.Log(context.Background(), toSlog(level), msg, hclogValues(args)...)
}

// hclogValues formats the values of key-value pairs as hclog does: raft
// logs hclog.Fmt("%+v", servers), and itself as a fmt.Stringer, which slog
// would print as a slice and as the struct's exported fields.
func hclogValues(args []any) []any {
	out := make([]any, len(args))
	copy(out, args)
	for i := 1; i < len(out); i += 2 {
		switch v := out[i].(type) {
		case hclog.Format:
			if len(v) > 0 {
				if f, ok := v[0].(string); ok {
					out[i] = fmt.Sprintf(f, v[1:]...)
				}
			}
		case hclog.Hex:
			out[i] = "0x" + strconv.FormatUint(uint64(v), 16)
		case hclog.Octal:
			out[i] = "0" + strconv.FormatUint(uint64(v), 8)
		case hclog.Binary:
			out[i] = "0b" + strconv.FormatUint(uint64(v), 2)
		case hclog.Quote:
			out[i] = strconv.Quote(string(v))
		case error, time.Time, slog.LogValuer:
		case fmt.Stringer:
			// Through fmt, which turns a panicking String (a nil
			// pointer with a value receiver) into text, as slog would.
			out[i] = fmt.Sprint(v)
		}
	}
	return out
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return a.level <= hclog.Trace }
func (a *hclogAdapter) IsDebug() bool                 { return a.level <= hclog.Debug }
func (a *hclogAdapter) IsInfo() bool                  { return a.level <= hclog.Info }
func (a *hclogAdapter) IsWarn() bool                  { return a.level <= hclog.Warn }
func (a *hclogAdapter) IsError() bool                 { return a.level <= hclog.Error }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.args }
func (a *hclogAdapter) Name() string                  { return a.name }
func (a *hclogAdapter) SetLevel(l hclog.Level)        { a.level = l }
func (a *hclogAdapter) GetLevel() hclog.Level         { return a.level }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.l = a.l.With(hclogValues(args)...)
	c.args = append(append([]any{}, a.args...), args...)
	return &c
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
