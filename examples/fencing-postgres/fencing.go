// Command fencing-postgres shows how to enforce a concord lock's fencing
// token in your own Postgres: the protected row keeps the highest token that
// wrote it, and every write is conditional on carrying a token at least as
// high. A holder that lost its lock (paused past its session, say) writes
// nothing.
//
//	go run ./examples/fencing-postgres --endpoints 127.0.0.1:7070 \
//	  --postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
)

// ErrFenced is returned by a write whose token is older than the row's.
var ErrFenced = errors.New("fenced: a newer lock holder has written this row")

// Schema creates the demo table: fence is the highest token that wrote the
// row.
const Schema = `CREATE TABLE IF NOT EXISTS fencing_demo (
	id    text PRIMARY KEY,
	state text NOT NULL,
	fence bigint NOT NULL DEFAULT 0
)`

// FencedWrite writes state to row id under the lock's token. It inserts the
// row if needed and updates it only if no newer token has written it.
func FencedWrite(ctx context.Context, db *pgx.Conn, id, state string, token uint64) error {
	tag, err := db.Exec(ctx, `
		INSERT INTO fencing_demo (id, state, fence) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, fence = EXCLUDED.fence
		WHERE fencing_demo.fence <= EXCLUDED.fence`, id, state, int64(token))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w (row %s, token %d)", ErrFenced, id, token)
	}
	return nil
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:7070", "concord client endpoints")
	dsn := flag.String("postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "Postgres URL")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, []string{*endpoints}, *dsn); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoints []string, dsn string) error {
	c, err := client.New(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer c.Close()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, Schema); err != nil {
		return err
	}
	sess, err := c.NewSession(ctx)
	if err != nil {
		return err
	}
	defer sess.Close(context.Background())
	m := concurrency.NewMutex(sess, "order:42")
	if err := m.Lock(ctx); err != nil {
		return err
	}
	defer m.Unlock(context.Background())
	if err := FencedWrite(m.Context(), db, "order-42", "paid", m.Token()); err != nil {
		return err
	}
	fmt.Printf("wrote order-42 under token %d\n", m.Token())
	return nil
}
