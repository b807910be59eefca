package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/concord-dev/concord/client"
)

// kvJSON is the JSON form of a key-value: strings when they are UTF-8,
// base64 (with encoding set) otherwise. Value is always there, "" for an
// empty value, except in keys-only listings, which leave it out (nil).
type kvJSON struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	Encoding       string  `json:"encoding,omitempty"`
	CreateRevision uint64  `json:"create_revision"`
	ModRevision    uint64  `json:"mod_revision"`
	Version        int64   `json:"version"`
	Session        int64   `json:"session,omitempty"`
}

func toKVJSON(kv *client.KeyValue) kvJSON {
	out := kvJSON{CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion(), Session: kv.GetSession()}
	var value string
	if utf8.Valid(kv.GetKey()) && utf8.Valid(kv.GetValue()) {
		out.Key, value = string(kv.GetKey()), string(kv.GetValue())
	} else {
		out.Key = base64.StdEncoding.EncodeToString(kv.GetKey())
		value = base64.StdEncoding.EncodeToString(kv.GetValue())
		out.Encoding = "base64"
	}
	out.Value = &value
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// display renders a name, key, owner or reason that the server stores as
// any bytes for a line of human output: as it is when it is printable
// UTF-8 without spaces other than ' ', quoted with Go's escapes otherwise,
// so that a control character can neither drive the terminal nor break a
// table's rows and columns. --json output carries the exact bytes.
func display[T string | []byte](v T) string {
	s := string(v)
	for _, r := range s {
		if r == utf8.RuneError || (r != ' ' && !unicode.IsPrint(r)) {
			return strconv.Quote(s)
		}
	}
	if s != "" && s[0] == '"' {
		return strconv.Quote(s) // not to be taken for an escaped one
	}
	return s
}
