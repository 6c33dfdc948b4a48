package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/regent-ci/regent/internal/config"
)

// desiredRows is a desired state encoded as the entity tables keep it. It
// is prepared before the apply transaction, while the passwords are
// hashed, so that the transaction only compares and writes.
type desiredRows struct {
	builders, repos, schedulers []entityRow
	workers                     []workerRow
}

// entityRow is one builder, repository or scheduler as its table keeps it.
type entityRow struct {
	name string
	// previous are the builder's declared previous names.
	previous []string
	// spec is the definition as JSON, compared with the stored one to
	// tell whether the entity changed.
	spec string
	// values are the table's columns after name, in entityTable.cols
	// order, spec last.
	values []any
}

// workerRow is one worker with its tags as JSON and its password digest.
type workerRow struct {
	config.Worker
	tags   string
	digest string
}

// entityTable is a table of entities matched by name: builders,
// repositories or schedulers. cols are the columns an apply writes besides
// name and the generations.
type entityTable struct {
	name string
	cols []string
}

var (
	buildersTable   = entityTable{name: "builders", cols: []string{"description", "tags", "spec"}}
	reposTable      = entityTable{name: "repos", cols: []string{"url", "spec"}}
	schedulersTable = entityTable{name: "schedulers", cols: []string{"kind", "spec"}}
)

// encodeDesired encodes st for the entity tables; digests are the
// workers' password digests by name.
func encodeDesired(st *config.State, digests map[string]string) (desiredRows, error) {
	var d desiredRows
	for _, b := range st.Builders {
		spec, err := json.Marshal(b)
		if err != nil {
			return d, fmt.Errorf("encode builder %q: %w", b.Name, err)
		}
		d.builders = append(d.builders, entityRow{name: b.Name, previous: b.PreviousNames, spec: string(spec),
			values: []any{b.Description, tagsJSON(b.Tags), string(spec)}})
	}
	for _, x := range st.Repos {
		spec, err := json.Marshal(x)
		if err != nil {
			return d, fmt.Errorf("encode repository %q: %w", x.Name, err)
		}
		d.repos = append(d.repos, entityRow{name: x.Name, spec: string(spec), values: []any{x.URL, string(spec)}})
	}
	for _, x := range st.Schedulers {
		spec, err := json.Marshal(x)
		if err != nil {
			return d, fmt.Errorf("encode scheduler %q: %w", x.Name, err)
		}
		d.schedulers = append(d.schedulers, entityRow{name: x.Name, spec: string(spec),
			values: []any{x.Kind, string(spec)}})
	}
	for _, w := range st.Workers {
		d.workers = append(d.workers, workerRow{Worker: w, tags: tagsJSON(w.Tags), digest: digests[w.Name]})
	}
	return d, nil
}

func tagsJSON(tags []string) string {
	if tags == nil {
		return "[]"
	}
	b, _ := json.Marshal(tags) // a list of strings always encodes
	return string(b)
}

// reconciler applies one desired state to the entity tables inside the
// apply transaction. It reads each table's active rows once, writes only
// the rows that changed, and inserts new rows many to a statement, so an
// apply costs a few round trips plus one per changed row.
type reconciler struct {
	tx        *sql.Tx
	gen       int64
	now       int64
	stmts     map[string]*sql.Stmt
	cancelled int
	revoked   int
	// revived maps each builder that took over a retired builder's
	// history through its previous names to that builder's name.
	revived map[string]string
	// passwordsStored are the workers whose password the apply stored:
	// new, changed, or back from retirement.
	passwordsStored []string
}

// batchRows is the most rows one INSERT carries, and batchIDs the most
// ids or names one IN list holds: few round trips, and far below the
// limits both databases put on the parameters of a statement.
const (
	batchRows = 200
	batchIDs  = 500
)

// exec runs a statement the apply may run once per row, prepared once for
// the transaction.
func (r *reconciler) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, ok := r.stmts[query]
	if !ok {
		var err error
		if st, err = r.tx.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		if r.stmts == nil {
			r.stmts = map[string]*sql.Stmt{}
		}
		r.stmts[query] = st // closed with the transaction
	}
	return st.ExecContext(ctx, args...)
}

type activeRow struct {
	id   int64
	name string
	spec string
}

// rowUpdate is an existing row, active or retired, to be given row's name
// and definition.
type rowUpdate struct {
	id  int64
	row entityRow
}

// active returns the active rows of table by name.
func (r *reconciler) active(ctx context.Context, table string) (map[string]activeRow, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT id, name, spec FROM `+table+
		` WHERE retired_generation IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("read active %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]activeRow{}
	for rows.Next() {
		var a activeRow
		if err := rows.Scan(&a.id, &a.name, &a.spec); err != nil {
			return nil, fmt.Errorf("read active %s: %w", table, err)
		}
		out[a.name] = a
	}
	return out, rows.Err()
}

// retiredRows returns, for those of names that table has retired rows
// of, the id of the most recently retired one: the row a returning name
// brings back, with its history.
func retiredRows(ctx context.Context, q querier, table string, names []string) (map[string]int64, error) {
	out := map[string]int64{}
	for chunk := range slices.Chunk(names, batchIDs) {
		args := make([]any, len(chunk))
		for i, n := range chunk {
			args[i] = n
		}
		rows, err := q.QueryContext(ctx, `SELECT id, name FROM `+table+` WHERE retired_generation
			IS NOT NULL AND name IN (`+placeholders(1, len(chunk))+`)
			ORDER BY retired_generation DESC, id DESC`, args...)
		if err != nil {
			return nil, fmt.Errorf("read retired %s: %w", table, err)
		}
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read retired %s: %w", table, err)
			}
			if _, seen := out[name]; !seen {
				out[name] = id
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read retired %s: %w", table, err)
		}
	}
	return out, nil
}

// placeholders returns "$first, ..., $first+n-1".
func placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", first+i)
	}
	return b.String()
}

// insert adds rows to table, each holding the values of cols, created and
// updated in the current generation, batchRows rows to a statement.
func (r *reconciler) insert(ctx context.Context, table string, cols []string, rows [][]any) error {
	for chunk := range slices.Chunk(rows, batchRows) {
		var q strings.Builder
		fmt.Fprintf(&q, "INSERT INTO %s (%s, created_generation, updated_generation) VALUES ",
			table, strings.Join(cols, ", "))
		args := []any{r.gen}
		for i, row := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "(%s, $1, $1)", placeholders(len(args)+1, len(row)))
			args = append(args, row...)
		}
		if _, err := r.tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert %d %s: %w", len(chunk), table, err)
		}
	}
	return nil
}

// retire marks rows of table retired in the current generation.
func (r *reconciler) retire(ctx context.Context, table string, rows []activeRow) error {
	for chunk := range slices.Chunk(rows, batchIDs) {
		args := []any{r.gen}
		for _, a := range chunk {
			args = append(args, a.id)
		}
		_, err := r.tx.ExecContext(ctx, `UPDATE `+table+` SET retired_generation = $1
			WHERE id IN (`+placeholders(2, len(chunk))+`)`, args...)
		if err != nil {
			return fmt.Errorf("retire %d %s: %w", len(chunk), table, err)
		}
	}
	return nil
}

// byID lists the rows of a name map in id order, so that writes follow a
// stable order.
func byID(m map[string]activeRow) []activeRow {
	out := make([]activeRow, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b activeRow) int { return cmp.Compare(a.id, b.id) })
	return out
}

// entities reconciles table with want and returns the active rows it
// retired, as reconcile does.
func (r *reconciler) entities(ctx context.Context, t entityTable, want []entityRow) ([]activeRow, error) {
	ch, err := r.reconcile(ctx, t, want)
	return ch.gone, err
}

// entityChanges is what reconciling a table did beyond updating rows in
// place.
type entityChanges struct {
	// added are the names that were not active: new, or brought back
	// from retirement.
	added []string
	// gone are the active rows no longer wanted, now retired.
	gone []activeRow
	// revived maps each name added that took over a retired row of one of
	// its previous names to that name.
	revived map[string]string
	// written is set when a row was inserted or updated.
	written bool
}

// reconcile reconciles table with want: an unchanged row is left alone, a
// changed or renamed one updated in place, and a name that is not active
// brings back the most recently retired row of its first previous name
// that has one, else of its own name; the rest are inserted. Active rows
// no longer wanted are retired.
func (r *reconciler) reconcile(ctx context.Context, t entityTable, want []entityRow) (entityChanges, error) {
	var ch entityChanges
	have, err := r.active(ctx, t.name)
	if err != nil {
		return ch, err
	}
	wanted := make(map[string]bool, len(want))
	for _, e := range want {
		wanted[e.name] = true
	}
	var updates []rowUpdate
	var fresh []entityRow
	for _, e := range want {
		if a, ok := have[e.name]; ok {
			delete(have, e.name)
			if a.spec != e.spec {
				updates = append(updates, rowUpdate{id: a.id, row: e})
			}
		} else if prev, ok := renamedFrom(e.previous, have, wanted); ok {
			delete(have, prev.name)
			updates = append(updates, rowUpdate{id: prev.id, row: e})
		} else {
			fresh = append(fresh, e)
			ch.added = append(ch.added, e.name)
		}
	}
	fresh, ch.revived, err = r.takeOverRetired(ctx, t.name, fresh, wanted, &updates)
	if err != nil {
		return ch, err
	}
	inserts, revived, err := splitRevived(ctx, r, t.name, fresh, func(e entityRow) string { return e.name })
	if err != nil {
		return ch, err
	}
	for id, e := range revived {
		updates = append(updates, rowUpdate{id: id, row: e})
	}
	if err := r.update(ctx, t, updates); err != nil {
		return ch, err
	}
	values := make([][]any, len(inserts))
	for i, e := range inserts {
		values[i] = append([]any{e.name}, e.values...)
	}
	if err := r.insert(ctx, t.name, append([]string{"name"}, t.cols...), values); err != nil {
		return ch, err
	}
	ch.gone = byID(have)
	ch.written = len(updates)+len(inserts) > 0
	return ch, r.retire(ctx, t.name, ch.gone)
}

// takeOverRetired gives each row of fresh the most recently retired row of
// the first of its previous names that table retired and want does not
// name, adding it to updates, and returns the rest of fresh with the
// names taken over by the name of the row taking them over.
func (r *reconciler) takeOverRetired(ctx context.Context, table string, fresh []entityRow,
	wanted map[string]bool, updates *[]rowUpdate) ([]entityRow, map[string]string, error) {
	var names []string
	for _, e := range fresh {
		for _, p := range e.previous {
			if !wanted[p] {
				names = append(names, p)
			}
		}
	}
	if len(names) == 0 {
		return fresh, nil, nil
	}
	retired, err := retiredRows(ctx, r.tx, table, names)
	if err != nil {
		return nil, nil, err
	}
	taken := map[string]string{}
	claimed := map[string]bool{}
	var rest []entityRow
	for _, e := range fresh {
		i := slices.IndexFunc(e.previous, func(p string) bool {
			_, ok := retired[p]
			return ok && !wanted[p] && !claimed[p]
		})
		if i < 0 {
			rest = append(rest, e)
			continue
		}
		from := e.previous[i]
		taken[e.name], claimed[from] = from, true
		*updates = append(*updates, rowUpdate{id: retired[from], row: e})
	}
	return rest, taken, nil
}

// splitRevived splits rows not active in table into those to insert and,
// by the id of the row they bring back, those whose name table retired.
func splitRevived[T any](ctx context.Context, r *reconciler, table string, rows []T, name func(T) string) (
	inserts []T, revived map[int64]T, err error) {
	if len(rows) == 0 {
		return nil, nil, nil
	}
	names := make([]string, len(rows))
	for i, x := range rows {
		names[i] = name(x)
	}
	retired, err := retiredRows(ctx, r.tx, table, names)
	if err != nil {
		return nil, nil, err
	}
	revived = map[int64]T{}
	for _, x := range rows {
		if id, ok := retired[name(x)]; ok {
			revived[id] = x
		} else {
			inserts = append(inserts, x)
		}
	}
	return inserts, revived, nil
}

// update gives existing rows of t their new name and definition, bringing
// back those that were retired.
func (r *reconciler) update(ctx context.Context, t entityTable, updates []rowUpdate) error {
	slices.SortFunc(updates, func(a, b rowUpdate) int { return cmp.Compare(a.id, b.id) })
	var set strings.Builder
	set.WriteString("name = $1")
	for i, c := range t.cols {
		fmt.Fprintf(&set, ", %s = $%d", c, i+2)
	}
	n := len(t.cols) + 2
	query := fmt.Sprintf(`UPDATE %s SET %s, updated_generation = $%d, retired_generation = NULL
		WHERE id = $%d`, t.name, set.String(), n, n+1)
	for _, u := range updates {
		args := append(append([]any{u.row.name}, u.row.values...), r.gen, u.id)
		if _, err := r.exec(ctx, query, args...); err != nil {
			return fmt.Errorf("store %s %q: %w", t.name, u.row.name, err)
		}
	}
	return nil
}

// renamedFrom finds the active row whose name is one of previous, provided
// that name is not itself still wanted.
func renamedFrom(previous []string, have map[string]activeRow, wanted map[string]bool) (activeRow, bool) {
	for _, p := range previous {
		if a, ok := have[p]; ok && !wanted[p] {
			return a, true
		}
	}
	return activeRow{}, false
}

// builders reconciles the builders and cancels the pending build requests
// of those removed.
func (r *reconciler) builders(ctx context.Context, want []entityRow) error {
	ch, err := r.reconcile(ctx, buildersTable, want)
	if err != nil {
		return err
	}
	r.revived = ch.revived
	for _, a := range ch.gone {
		reason := fmt.Sprintf("builder %q was removed from the configuration in generation %d", a.name, r.gen)
		res, err := r.exec(ctx, `UPDATE build_requests SET state = $1, reason = $2,
			completed_at = $3 WHERE builder_id = $4 AND state = $5`,
			RequestCancelled, reason, r.now, a.id, RequestPending)
		if err != nil {
			return fmt.Errorf("cancel requests of builder %q: %w", a.name, err)
		}
		n, _ := res.RowsAffected()
		r.cancelled += int(n)
	}
	return nil
}
