package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The fencing evidence the database keeps: the history of the grants of
// every clustered service's token, and the fence beside each row a
// service writes. A row written under token T of a service at database
// time W was accepted wrongly if that service had been granted a newer
// token before W. Both times are read after the service's row lock is
// taken (the grant's by the supervisor round that changes the owner, the
// write's by the fence check), so an accepted write that commits before a
// grant is always dated before it.

// fenceStamp is what a row written under a fence records of it: the
// service, its token and the database clock once the fence was checked.
// The zero fenceStamp (all NULL) marks a write made outside any clustered
// service.
type fenceStamp struct {
	service sql.NullString
	token   sql.NullInt64
	at      sql.NullInt64
}

// stampFence checks f in tx as checkFence does, and returns the stamp the
// rows tx writes under f carry. Call it first in the transaction.
func (s *Store) stampFence(ctx context.Context, tx *sql.Tx, f Fence) (fenceStamp, error) {
	if err := s.checkFence(ctx, tx, f); err != nil || f.Service == "" {
		return fenceStamp{}, err
	}
	now, err := s.dbNow(ctx, tx)
	if err != nil {
		return fenceStamp{}, err
	}
	return fenceStamp{
		service: sql.NullString{String: f.Service, Valid: true},
		token:   sql.NullInt64{Int64: f.Token, Valid: true},
		at:      sql.NullInt64{Int64: now, Valid: true},
	}, nil
}

// recordGrant adds to the grant history that service was given token,
// owned by the incarnation master, or by nobody when master is 0. Call it
// after the services row was updated in tx, so that the grant is dated
// after its row lock was taken.
func (s *Store) recordGrant(ctx context.Context, tx *sql.Tx, service string, token, master int64) error {
	owner := sql.NullInt64{Int64: master, Valid: master != 0}
	_, err := tx.ExecContext(ctx, `INSERT INTO service_grants (service, token, master, granted_at)
		VALUES ($1, $2, $3, `+s.nowSQL()+`)`, service, token, owner)
	if err != nil {
		return fmt.Errorf("record grant of service %s with token %d: %w", service, token, err)
	}
	return nil
}

// ServiceGrant is one grant of a clustered service's token.
type ServiceGrant struct {
	Service string `json:"service"`
	Token   int64  `json:"token"`
	// Master is the incarnation given the service, 0 when the grant
	// released or retired it.
	Master    int64     `json:"master"`
	GrantedAt time.Time `json:"granted_at"`
}

// ServiceGrants lists the grants of service's tokens, oldest first.
func (s *Store) ServiceGrants(ctx context.Context, service string) ([]ServiceGrant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT service, token, COALESCE(master, 0), granted_at
		FROM service_grants WHERE service = $1 ORDER BY token`, service)
	if err != nil {
		return nil, fmt.Errorf("list grants of service %s: %w", service, err)
	}
	defer rows.Close()
	var out []ServiceGrant
	for rows.Next() {
		var g ServiceGrant
		var at int64
		if err := rows.Scan(&g.Service, &g.Token, &g.Master, &at); err != nil {
			return nil, fmt.Errorf("list grants of service %s: %w", service, err)
		}
		g.GrantedAt = fromMicros(at)
		out = append(out, g)
	}
	return out, rows.Err()
}
