package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadIdentity reads arbitrary bytes as member.json: a file it accepts
// names an ID and saves back to a file that loads the same identity; any
// other file is refused with an error, never taken for a missing one (a
// member that found no identity would bootstrap a cluster of its own).
func FuzzLoadIdentity(f *testing.F) {
	good, _ := json.Marshal(identity{ID: "n1-3f2a", Name: "n1"})
	f.Add(good)
	seeded, _ := json.Marshal(identity{ID: "n1", Name: "n1", SeedSHA256: NewSeed(1000, []byte("state")).SHA256, SeedIndex: 1000})
	f.Add(seeded)
	f.Add([]byte(`{"id":"n1","name":"n1","seed_sha256":"not hex"}`))
	f.Add([]byte(`{"id":"n1","name":"n1","seed_sha256":"ABCD"}`))
	f.Add([]byte(`{"id":"","name":"n1"}`))
	f.Add([]byte(`{"id":"a","id":"b"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, identityFile), data, 0o640); err != nil {
			t.Fatal(err)
		}
		id, ok, err := loadIdentity(dir)
		if err != nil {
			return
		}
		if !ok || id.ID == "" {
			t.Fatalf("member.json %q loaded as %+v, found %v, without an error", data, id, ok)
		}
		again := t.TempDir()
		if err := saveIdentity(again, id); err != nil {
			t.Fatal(err)
		}
		id2, ok, err := loadIdentity(again)
		if err != nil || !ok || id2 != id {
			t.Fatalf("identity %+v saved and loaded as %+v (%v, %v)", id, id2, ok, err)
		}
	})
}
