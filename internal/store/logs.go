package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Log chunks are compressed one by one with zstd, so that any range of a
// log can be read back without decompressing what comes before it.
var (
	zEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	zDecoder, _ = zstd.NewReader(nil)
)

// AppendLog stores bytes of a step's output that start at offset. Appends
// are idempotent: bytes already stored are skipped, so a worker may resend
// a chunk whose acknowledgement it lost. An offset beyond the stored size
// is a conflict (bytes would be missing). It returns the stored size,
// which is where the next append starts.
func (s *Store) AppendLog(ctx context.Context, buildID int64, token string, step int,
	offset int64, data []byte) (int64, error) {
	var size int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.attempt(ctx, tx, buildID, token); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT log_size FROM steps WHERE build_id = $1
			AND number = $2`, buildID, step).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("step %d of build %d was never started: %w", step, buildID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if offset > size {
			return fmt.Errorf("log of step %d of build %d has %d bytes, append at %d: %w",
				step, buildID, size, offset, ErrConflict)
		}
		skip := size - offset
		if skip >= int64(len(data)) {
			return nil
		}
		data = data[skip:]
		_, err = tx.ExecContext(ctx, `INSERT INTO log_chunks (build_id, step, start_offset,
			raw_size, data) VALUES ($1, $2, $3, $4, $5)`,
			buildID, step, size, len(data), zEncoder.EncodeAll(data, nil))
		if err != nil {
			return fmt.Errorf("store log chunk: %w", err)
		}
		size += int64(len(data))
		_, err = tx.ExecContext(ctx, `UPDATE steps SET log_size = $1 WHERE build_id = $2
			AND number = $3`, size, buildID, step)
		return err
	})
	return size, err
}

// LogSize returns how many bytes of a step's log are stored.
func (s *Store) LogSize(ctx context.Context, buildID int64, step int) (int64, error) {
	var size int64
	err := s.db.QueryRowContext(ctx, `SELECT log_size FROM steps WHERE build_id = $1
		AND number = $2`, buildID, step).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return size, err
}

// WriteLog copies the stored bytes of a step's log from offset from up to
// (not including) offset to into w, a few chunks at a time so that memory
// stays flat whatever the log's size. A negative to means the end. It
// returns the offset after the last byte written.
func (s *Store) WriteLog(ctx context.Context, w io.Writer, buildID int64, step int, from, to int64) (int64, error) {
	if to < 0 {
		to = 1 << 62
	}
	pos := from
	for pos < to {
		n, err := s.writeLogBatch(ctx, w, buildID, step, pos, to)
		if err != nil {
			return pos, err
		}
		if n == pos {
			return pos, nil
		}
		pos = n
	}
	return pos, nil
}

// writeLogBatch writes the chunks covering [pos, to) in one query of a
// bounded number of rows.
func (s *Store) writeLogBatch(ctx context.Context, w io.Writer, buildID int64, step int, pos, to int64) (int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT start_offset, raw_size, data FROM log_chunks
		WHERE build_id = $1 AND step = $2 AND start_offset + raw_size > $3 AND start_offset < $4
		ORDER BY start_offset LIMIT 16`, buildID, step, pos, to)
	if err != nil {
		return pos, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var start int64
		var raw int
		var data []byte
		if err := rows.Scan(&start, &raw, &data); err != nil {
			return pos, err
		}
		plain, err := zDecoder.DecodeAll(data, make([]byte, 0, raw))
		if err != nil {
			return pos, fmt.Errorf("decompress log chunk at %d: %w", start, err)
		}
		lo := max(pos-start, 0)
		hi := min(int64(len(plain)), to-start)
		if lo < hi {
			if _, err := w.Write(plain[lo:hi]); err != nil {
				return pos, err
			}
		}
		pos = start + hi
	}
	return pos, rows.Err()
}
