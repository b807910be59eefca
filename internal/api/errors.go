package api

import (
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/session"
)

func sessionGone(id int64) error {
	return errs.Wrapf(session.ErrNotFound, "session %d", id)
}
