package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
)

func newKVCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "kv", Short: "Read, write and watch keys"}
	cmd.AddCommand(kvGet(g), kvPut(g), kvDel(g), kvLs(g), kvWatch(g), kvTxn(g), kvAdd(g))
	return cmd
}

func consistencyFlag(s string) (client.Consistency, error) {
	switch s {
	case "linearizable", "l", "":
		return client.Linearizable, nil
	case "session", "s":
		return client.SessionRead, nil
	case "stale":
		return client.Stale, nil
	}
	return 0, fmt.Errorf("--consistency %q: want linearizable, session or stale", s)
}

func kvGet(g *globals) *cobra.Command {
	var consistency string
	var prefix bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value (exit 1 if it does not exist)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := consistencyFlag(consistency)
			if err != nil {
				return err
			}
			if prefix {
				return listKeys(cmd, g, args[0], c, false)
			}
			return g.withReader(cmd, c, func(ctx context.Context, cl *client.Client) error {
				kv, err := cl.Get(ctx, args[0], client.WithConsistency(c))
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, toKVJSON(kv))
				}
				_, err = fmt.Fprintf(g.stdout, "%s\n", kv.GetValue())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, session or stale")
	cmd.Flags().BoolVar(&prefix, "prefix", false, "print every key with this prefix and its value")
	return cmd
}

func kvPut(g *globals) *cobra.Command {
	var session int64
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE|-]",
		Short: "Write a key (the value from stdin with - or when omitted)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			if len(args) == 2 && args[1] != "-" {
				value = []byte(args[1])
			} else {
				b, err := io.ReadAll(io.LimitReader(g.stdin, 64<<20))
				if err != nil {
					return err
				}
				value = b
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				res, err := cl.Put(ctx, args[0], value, client.WithSessionID(session))
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]any{"revision": res.Revision})
				}
				_, err = fmt.Fprintf(g.stdout, "OK revision %d\n", res.Revision)
				return err
			})
		},
	}
	cmd.Flags().Int64Var(&session, "session", 0, "bind the key to this session: it is deleted when the session ends")
	return cmd
}

func kvDel(g *globals) *cobra.Command {
	var prefix, all bool
	cmd := &cobra.Command{
		Use:   "del KEY [--prefix] | del --all",
		Short: "Delete a key (or every key with a prefix, or with --all every key)",
		Args:  cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := ""
			switch {
			case all && len(args) == 1 && args[0] != "":
				return fmt.Errorf("%w: --all deletes every key: give no KEY with it", client.ErrInvalidArgument)
			case all:
				prefix = true
			case len(args) == 0:
				return fmt.Errorf("%w: give the KEY to delete (--all deletes every key)", client.ErrInvalidArgument)
			case args[0] == "" && prefix:
				// An unset shell variable ("$DIR" --prefix) must not
				// wipe the cluster.
				return fmt.Errorf("%w: an empty prefix matches every key: to delete them all, pass --all", client.ErrInvalidArgument)
			default:
				key = args[0]
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				var opts []client.OpOption
				if prefix {
					opts = append(opts, client.WithPrefix())
				}
				res, err := cl.Delete(ctx, key, opts...)
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]any{"deleted": res.Deleted, "revision": res.Revision})
				}
				_, err = fmt.Fprintf(g.stdout, "deleted %d\n", res.Deleted)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "delete every key with this prefix (an empty one needs --all)")
	cmd.Flags().BoolVar(&all, "all", false, "delete every key")
	return cmd
}

func kvLs(g *globals) *cobra.Command {
	var consistency string
	var keysOnly bool
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List keys with a prefix (all keys without one)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := consistencyFlag(consistency)
			if err != nil {
				return err
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return listKeys(cmd, g, prefix, c, keysOnly)
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, session or stale")
	cmd.Flags().BoolVar(&keysOnly, "keys-only", true, "print keys only (--keys-only=false prints values too)")
	return cmd
}

// withReader is withClient for reads at consistency c: any member serves
// a stale one, leader or not.
func (g *globals) withReader(cmd *cobra.Command, c client.Consistency, f func(ctx context.Context, c *client.Client) error) error {
	if c == client.Stale {
		return g.withAnyMember(cmd, f)
	}
	return g.withClient(cmd, false, f)
}

func listKeys(cmd *cobra.Command, g *globals, prefix string, c client.Consistency, keysOnly bool) error {
	return g.withReader(cmd, c, func(ctx context.Context, cl *client.Client) error {
		var all []kvJSON
		opts := []client.OpOption{client.WithConsistency(c)}
		if keysOnly {
			opts = append(opts, client.WithKeysOnly())
		}
		for kv, err := range cl.List(ctx, prefix, opts...) {
			if err != nil {
				return err
			}
			if g.json {
				j := toKVJSON(kv)
				if keysOnly {
					j.Value = nil // not fetched: no value rather than ""
				}
				all = append(all, j)
				continue
			}
			if keysOnly {
				fmt.Fprintf(g.stdout, "%s\n", display(kv.GetKey()))
			} else {
				fmt.Fprintf(g.stdout, "%s\t%s\n", display(kv.GetKey()), display(kv.GetValue()))
			}
		}
		if g.json {
			if all == nil {
				all = []kvJSON{}
			}
			return writeJSON(g.stdout, all)
		}
		return nil
	})
}

func kvWatch(g *globals) *cobra.Command {
	var prefix bool
	var rev uint64
	cmd := &cobra.Command{
		Use:   "watch KEY",
		Short: "Print changes of a key (or prefix) until interrupted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, true, func(ctx context.Context, cl *client.Client) error {
				opts := []client.OpOption{client.WithRevision(rev)}
				if prefix {
					opts = append(opts, client.WithPrefix())
				}
				for resp := range cl.Watch(ctx, args[0], opts...) {
					if resp.Err != nil {
						return resp.Err
					}
					for _, ev := range resp.Events {
						if g.json {
							if err := writeJSON(g.stdout, map[string]any{"type": strings.TrimPrefix(ev.GetType().String(), "TYPE_"), "kv": toKVJSON(ev.GetKv())}); err != nil {
								return err
							}
							continue
						}
						switch ev.GetType() {
						case client.EventPut:
							fmt.Fprintf(g.stdout, "PUT %s %s (revision %d)\n", display(ev.GetKv().GetKey()), display(ev.GetKv().GetValue()), ev.GetKv().GetModRevision())
						case client.EventDelete:
							fmt.Fprintf(g.stdout, "DELETE %s (revision %d)\n", display(ev.GetKv().GetKey()), ev.GetKv().GetModRevision())
						}
					}
				}
				return ctx.Err()
			})
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "watch every key with this prefix")
	cmd.Flags().Uint64Var(&rev, "rev", 0, "start at this revision (default: the next one)")
	return cmd
}

func kvTxn(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "txn",
		Short: "Apply a transaction read as JSON from stdin",
		Long: `Apply a transaction read from stdin as the JSON form of concord.v1.TxnRequest
(bytes fields in base64). Example: create key "a" only if it is absent:

  echo '{"compare":[{"key":"YQ==","target":"TARGET_CREATE_REVISION","result":"RESULT_EQUAL"}],
         "success":[{"put":{"key":"YQ==","value":"MQ=="}}]}' | concord kv txn`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := io.ReadAll(io.LimitReader(g.stdin, 64<<20))
			if err != nil {
				return err
			}
			var req concordv1.TxnRequest
			if err := protojson.Unmarshal(b, &req); err != nil {
				return fmt.Errorf("%w: transaction JSON: %v", client.ErrInvalidArgument, err)
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				res, err := cl.Txn().If(req.GetCompare()...).Then(req.GetSuccess()...).Else(req.GetFailure()...).Commit(ctx)
				if err != nil {
					return err
				}
				if g.json {
					return writeProtoJSON(g.stdout, &concordv1.TxnResponse{Succeeded: res.Succeeded, Responses: res.Responses,
						Header: &concordv1.ResponseHeader{Revision: res.Revision}})
				}
				branch := "SUCCESS"
				if !res.Succeeded {
					branch = "FAILURE"
				}
				_, err = fmt.Fprintf(g.stdout, "%s revision %d, %d operations\n", branch, res.Revision, len(res.Responses))
				return err
			})
		},
	}
}

func kvAdd(g *globals) *cobra.Command {
	var minS, maxS string
	cmd := &cobra.Command{
		Use:   "add KEY DELTA",
		Short: "Add to an integer counter, optionally only within [--min, --max]",
		Long: `Add DELTA to the integer counter at KEY (a missing key counts as 0) and print
the new value. With --min or --max the add applies only if the result stays
within bounds; otherwise nothing changes and the exit code is 3.

  concord kv add stock/sku-1 100
  concord kv add stock/sku-1 --min 0 -- -1     # negative deltas go after --`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			delta, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("%w: DELTA %q is not an integer", client.ErrInvalidArgument, args[1])
			}
			var opts []client.OpOption
			for _, b := range []struct {
				s   string
				opt func(int64) client.OpOption
			}{{minS, client.WithMin}, {maxS, client.WithMax}} {
				if b.s == "" {
					continue
				}
				v, err := strconv.ParseInt(b.s, 10, 64)
				if err != nil {
					return fmt.Errorf("%w: bound %q is not an integer", client.ErrInvalidArgument, b.s)
				}
				opts = append(opts, b.opt(v))
			}
			return g.withClient(cmd, false, func(ctx context.Context, cl *client.Client) error {
				v, err := cl.Add(ctx, args[0], delta, opts...)
				if errors.Is(err, client.ErrOutOfRange) {
					return &ExitError{Code: 3, Err: err}
				}
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(g.stdout, map[string]any{"value": v})
				}
				_, err = fmt.Fprintln(g.stdout, v)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&minS, "min", "", "apply only if the result is at least this")
	cmd.Flags().StringVar(&maxS, "max", "", "apply only if the result is at most this")
	return cmd
}
