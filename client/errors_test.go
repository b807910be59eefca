package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

func wireErr(t *testing.T, code connect.Code, reason string) error {
	e := connect.NewError(code, errors.New("server says no"))
	if reason != "" {
		d, err := connect.NewErrorDetail(&concordv1.ErrorInfo{Reason: reason, Revision: 7})
		require.NoError(t, err)
		e.AddDetail(d)
	}
	return e
}

func TestFromWireMapsReasonsToSentinels(t *testing.T) {
	tests := []struct {
		code   connect.Code
		reason string
		want   error
	}{
		{connect.CodeInvalidArgument, "KEY_TOO_LARGE", ErrTooLarge},
		{connect.CodeInvalidArgument, "EMPTY_KEY", ErrEmptyKey},
		{connect.CodeNotFound, "SESSION_NOT_FOUND", ErrSessionExpired},
		{connect.CodeFailedPrecondition, "OUT_OF_RANGE", ErrOutOfRange},
		{connect.CodeOutOfRange, "COMPACTED", ErrCompacted},
		{connect.CodeUnavailable, "NO_LEADER", ErrUnavailable},
		{connect.CodeUnavailable, "UNKNOWN_OUTCOME", ErrUnknownOutcome},
		{connect.CodeResourceExhausted, "QUOTA_EXCEEDED", ErrQuotaExceeded},
		// Without a reason the error came from the transport.
		{connect.CodeInternal, "", ErrUnavailable},
		{connect.CodeUnknown, "", ErrUnavailable},
		{connect.CodeResourceExhausted, "", ErrTooLarge},
		{connect.CodeUnauthenticated, "", ErrUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.reason+"/"+tc.code.String(), func(t *testing.T) {
			got := fromWire(wireErr(t, tc.code, tc.reason))
			require.ErrorIs(t, got, tc.want)
			if tc.reason != "" {
				var e *Error
				require.ErrorAs(t, got, &e)
				require.Equal(t, tc.reason, e.Reason)
				require.EqualValues(t, 7, e.Revision)
				require.Equal(t, "concord: server says no", e.Error())
			}
		})
	}
	require.ErrorIs(t, fromWire(wireErr(t, connect.CodeCanceled, "")), context.Canceled)
	require.Nil(t, fromWire(nil))
}

func TestRetryableOnlyWhenSafe(t *testing.T) {
	tests := []struct {
		reason     string
		code       connect.Code
		idempotent bool
		want       bool
	}{
		{"NOT_LEADER", connect.CodeUnavailable, false, true},
		{"NO_LEADER", connect.CodeUnavailable, false, true},
		{"UNKNOWN_OUTCOME", connect.CodeUnavailable, true, true},
		{"UNKNOWN_OUTCOME", connect.CodeUnavailable, false, false},
		{"", connect.CodeUnavailable, true, true},
		{"", connect.CodeUnavailable, false, false},
		{"KEY_TOO_LARGE", connect.CodeInvalidArgument, true, false},
		{"SESSION_NOT_FOUND", connect.CodeNotFound, true, false},
	}
	for _, tc := range tests {
		got := retryable(fromWire(wireErr(t, tc.code, tc.reason)), tc.idempotent)
		require.Equal(t, tc.want, got, "%s/%s idempotent=%v", tc.reason, tc.code, tc.idempotent)
	}
}

func TestEndpointURL(t *testing.T) {
	tests := []struct {
		in, url, addr string
		tls           bool
		bad           bool
	}{
		{in: "127.0.0.1:7070", url: "http://127.0.0.1:7070", addr: "127.0.0.1:7070"},
		{in: "http://h:1/", url: "http://h:1", addr: "h:1"},
		{in: "https://h:1", url: "https://h:1", addr: "h:1"},
		{in: "h:1", tls: true, url: "https://h:1", addr: "h:1"},
		{in: "nohostport", bad: true},
	}
	for _, tc := range tests {
		url, addr, err := endpointURL(tc.in, tc.tls)
		if tc.bad {
			require.ErrorIs(t, err, ErrInvalidArgument)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.url, url)
		require.Equal(t, tc.addr, addr)
	}
}

func TestPrefixEnd(t *testing.T) {
	require.Equal(t, []byte("b"), prefixEnd([]byte("a")))
	require.Equal(t, []byte("b"), prefixEnd([]byte("a\xff")))
	require.Nil(t, prefixEnd([]byte("\xff")))
	require.Nil(t, prefixEnd(nil))
}

func TestNewValidatesConfig(t *testing.T) {
	_, err := New(context.Background(), Config{})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = New(context.Background(), Config{Endpoints: []string{"bad"}})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = New(context.Background(), Config{Endpoints: []string{"127.0.0.1:1"}, ClientID: strings.Repeat("c", MaxClientIDBytes+1)})
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.ErrorContains(t, err, "ClientID")
}

// The framed batch upgrade writes the token into a raw HTTP request: a
// token with a line break would add headers of its caller's choosing.
func TestNewRefusesATokenThatIsNotAHeaderValue(t *testing.T) {
	for _, token := range []string{"a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb"} {
		_, err := New(context.Background(), Config{Endpoints: []string{"127.0.0.1:1"}, Token: token, DialTimeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, ErrInvalidArgument, "%q", token)
		require.ErrorContains(t, err, "Token", "%q", token)
	}
}
