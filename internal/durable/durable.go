// Package durable holds the file-system steps that make a write survive a
// crash, shared by the Raft log, the member's identity and backups.
package durable

import (
	"fmt"
	"os"
)

// SyncDir makes the creations, renames and removals of files in dir
// durable: a rename is on disk only once its directory is synced.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
