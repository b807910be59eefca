package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/testcluster"
)

func postgres(t *testing.T) *pgx.Conn {
	dsn := os.Getenv("CONCORD_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Skipf("SKIPPING: no Postgres at %s (set CONCORD_TEST_POSTGRES): %v", dsn, err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	_, err = db.Exec(ctx, Schema)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `DELETE FROM fencing_demo WHERE id = 'paused-holder'`)
	require.NoError(t, err)
	return db
}

// A holder pauses past its session; the next holder writes; the paused one
// wakes up and writes with its old token: Postgres refuses it.
func TestStaleHolderIsFencedInPostgres(t *testing.T) {
	db := postgres(t)
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pausedSess, err := cl.NewSession(ctx, client.WithTTL(time.Second))
	require.NoError(t, err)
	paused := concurrency.NewMutex(pausedSess, "order")
	require.NoError(t, paused.Lock(ctx))
	staleToken := paused.Token()
	require.NoError(t, FencedWrite(ctx, db, "paused-holder", "first", staleToken))

	pausedSess.Orphan() // the process freezes: no more keep-alives
	nextSess, err := cl.NewSession(ctx, client.WithTTL(5*time.Second))
	require.NoError(t, err)
	next := concurrency.NewMutex(nextSess, "order")
	require.NoError(t, next.Lock(ctx)) // granted once the paused session expires
	require.Greater(t, next.Token(), staleToken)
	require.NoError(t, FencedWrite(ctx, db, "paused-holder", "second", next.Token()))

	// The paused holder wakes up and writes: refused.
	err = FencedWrite(ctx, db, "paused-holder", "stale", staleToken)
	require.ErrorIs(t, err, ErrFenced)
	var state string
	var fence int64
	require.NoError(t, db.QueryRow(ctx, `SELECT state, fence FROM fencing_demo WHERE id = 'paused-holder'`).Scan(&state, &fence))
	require.Equal(t, "second", state)
	require.EqualValues(t, next.Token(), fence)
	require.NoError(t, next.Unlock(ctx))
}
