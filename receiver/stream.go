package receiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/walstore/walstore/base/durable"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// statusInterval bounds the time between two status messages to the
// server (wal_sender_timeout is 60 s by default).
const statusInterval = 10 * time.Second

// server is the cluster a session streams from.
type server struct {
	conn      *pgconn.PgConn
	connInfo  string // the connection string, without replication
	addr      string
	timeline  uint32
	xlogpos   wal.LSN
	sysid     uint64
	inStandby bool
}

// session connects, streams until something fails or ctx ends, and
// follows timeline switches on the way.
func (r *Receiver) session(ctx context.Context) error {
	srv, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer srv.conn.Close(context.Background())
	defer r.closeCurrent(true)
	start, tli, err := r.startPoint(ctx, srv)
	if err != nil {
		return err
	}
	r.setStatus(func(s *Status) {
		s.Connected, s.Server, s.LastError = true, srv.addr, ""
		s.Timeline = tli
	})
	r.log.Info("WAL receiver streaming", "server", srv.addr, "slot", r.opt.Slot, "from", start.String(), "timeline", tli, "server_timeline", srv.timeline, "standby", srv.inStandby)
	for {
		if err := r.ensureHistory(ctx, srv, tli); err != nil {
			return err
		}
		next, nextStart, err := r.stream(ctx, srv, start, tli)
		if err != nil {
			return err
		}
		// The timeline ended: its last segment stays a local partial; the
		// next timeline begins with the segment holding the switch point.
		r.log.Info("WAL receiver follows a timeline switch", "from_timeline", tli, "to_timeline", next, "at", nextStart.String())
		r.closeCurrent(false)
		tli, start = next, nextStart-nextStart%wal.LSN(r.segSz)
		r.setStatus(func(s *Status) { s.Timeline = tli })
	}
}

// connect opens a replication connection to the first cluster that
// answers as a primary of the archive's system, else to a standby of it.
func (r *Receiver) connect(ctx context.Context) (*server, error) {
	bound, err := r.opt.Archive.SystemID(ctx)
	if err != nil && !errors.Is(err, errkind.ErrNotFound) {
		return nil, err
	}
	var standby *server
	var errs []string
	for _, ci := range r.opt.ConnInfos {
		srv, err := r.dial(ctx, ci)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if bound != 0 && srv.sysid != bound {
			srv.conn.Close(context.Background())
			errs = append(errs, fmt.Sprintf("%s: %v (system %d, archive %s is %d)", srv.addr, errkind.ErrWrongSystem, srv.sysid, r.opt.Archive.Name, bound))
			continue
		}
		if !srv.inStandby {
			if standby != nil {
				standby.conn.Close(context.Background())
			}
			return srv, nil
		}
		if standby == nil {
			standby = srv
		} else {
			srv.conn.Close(context.Background())
		}
	}
	if standby != nil {
		return standby, nil
	}
	return nil, fmt.Errorf("no cluster to stream from: %s", strings.Join(errs, "; "))
}

func (r *Receiver) dial(ctx context.Context, connInfo string) (*server, error) {
	cfg, err := pgconn.ParseConfig(connInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: receiver connection string: %v", errkind.ErrConfig, err)
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = r.opt.AppName
	}
	cfg.RuntimeParams["replication"] = "true"
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	srv := &server{connInfo: connInfo, addr: fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
	srv.conn, err = pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", srv.addr, err)
	}
	fail := func(err error) (*server, error) {
		srv.conn.Close(context.Background())
		return nil, fmt.Errorf("%s: %w", srv.addr, err)
	}
	id, err := pglogrepl.IdentifySystem(ctx, srv.conn)
	if err != nil {
		return fail(err)
	}
	srv.timeline, srv.xlogpos = uint32(id.Timeline), wal.LSN(id.XLogPos)
	if srv.sysid, err = strconv.ParseUint(id.SystemID, 10, 64); err != nil {
		return fail(err)
	}
	vals, err := showAll(ctx, srv.conn, "wal_segment_size", "in_hot_standby")
	if err != nil {
		return fail(err)
	}
	size, err := pgSize(vals[0])
	if err != nil || !wal.ValidSegmentSize(size) {
		return fail(fmt.Errorf("wal_segment_size %q: %v", vals[0], err))
	}
	r.mu.Lock()
	r.segSz, r.sysid = size, srv.sysid
	r.mu.Unlock()
	srv.inStandby = vals[1] == "on"
	return srv, nil
}

// showAll runs SHOW for each setting on a replication connection.
func showAll(ctx context.Context, conn *pgconn.PgConn, names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		res, err := conn.Exec(ctx, "SHOW "+n).ReadAll()
		if err != nil {
			return nil, fmt.Errorf("SHOW %s: %w", n, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
			return nil, fmt.Errorf("SHOW %s: unexpected result", n)
		}
		out[i] = string(res[0].Rows[0][0])
	}
	return out, nil
}

// pgSize reads a size as PostgreSQL shows it (its MB is a MiB) ("16MB", "1GB").
func pgSize(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// slotInfo is READ_REPLICATION_SLOT's answer.
type slotInfo struct {
	exists     bool
	restart    wal.LSN
	restartTLI uint32
}

func readSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (slotInfo, error) {
	res, err := conn.Exec(ctx, "READ_REPLICATION_SLOT "+slot).ReadAll()
	if err != nil {
		return slotInfo{}, fmt.Errorf("READ_REPLICATION_SLOT %s: %w", slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 3 {
		return slotInfo{}, fmt.Errorf("READ_REPLICATION_SLOT %s: unexpected result", slot)
	}
	row := res[0].Rows[0]
	var si slotInfo
	if row[0] == nil {
		return si, nil
	}
	si.exists = true
	if string(row[0]) != "physical" {
		return si, fmt.Errorf("%w: replication slot %s is a %s slot, not a physical one", errkind.ErrConfig, slot, row[0])
	}
	if row[1] != nil {
		if si.restart, err = wal.ParseLSN(string(row[1])); err != nil {
			return si, err
		}
		tli, err := strconv.ParseUint(string(row[2]), 10, 32)
		if err != nil {
			return si, err
		}
		si.restartTLI = uint32(tli)
	}
	return si, nil
}

// slotLost asks the server (over an ordinary connection) whether the slot
// was invalidated: its WAL is gone.
func slotLost(ctx context.Context, connInfo, slot string) (bool, error) {
	cfg, err := pgx.ParseConfig(connInfo)
	if err != nil {
		return false, err
	}
	delete(cfg.RuntimeParams, "replication")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var status *string
	err = conn.QueryRow(cctx, `SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil && status != nil && *status == "lost", err
}

// startPoint decides where streaming begins: the start of the segment
// holding the slot's restart position, or of the newest segment this
// receiver holds locally if that is earlier (a new slot on a promoted
// server must not make it skip what it has not received).
func (r *Receiver) startPoint(ctx context.Context, srv *server) (wal.LSN, uint32, error) {
	si, err := readSlot(ctx, srv.conn, r.opt.Slot)
	if err != nil {
		return 0, 0, err
	}
	if !si.exists {
		if !r.opt.CreateSlot {
			r.setStatus(func(s *Status) { s.SlotState = "missing" })
			return 0, 0, fmt.Errorf("%w: replication slot %s does not exist on %s: give --receive-create-slot, or create it: SELECT pg_create_physical_replication_slot('%s', true)", errkind.ErrConfig, r.opt.Slot, srv.addr, r.opt.Slot)
		}
		if _, err := pglogrepl.CreateReplicationSlot(ctx, srv.conn, r.opt.Slot, "", pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.PhysicalReplication}); err != nil {
			return 0, 0, fmt.Errorf("create replication slot %s on %s: %w", r.opt.Slot, srv.addr, err)
		}
		r.log.Info("created replication slot", "slot", r.opt.Slot, "server", srv.addr)
		r.setStatus(func(s *Status) { s.SlotState = "created" })
	} else if si.restart == 0 {
		lost, err := slotLost(ctx, srv.connInfo, r.opt.Slot)
		if err != nil {
			return 0, 0, fmt.Errorf("look at replication slot %s on %s: %w", r.opt.Slot, srv.addr, err)
		}
		if lost {
			r.setStatus(func(s *Status) { s.SlotState = "invalidated" })
			return 0, 0, fmt.Errorf("%w: %s on %s no longer holds WAL (max_slot_wal_keep_size): the receiver will not start again later and leave a gap. Check that archive_command archived what the slot lost (walstored verify), then drop the slot (SELECT pg_drop_replication_slot('%s')) and walstored makes a new one with --receive-create-slot", ErrSlotInvalidated, r.opt.Slot, srv.addr, r.opt.Slot)
		}
	} else {
		r.setStatus(func(s *Status) { s.SlotState = "ok" })
	}
	seg := wal.LSN(r.segSz)
	start, tli := srv.xlogpos-srv.xlogpos%seg, srv.timeline
	if si.restart != 0 {
		start, tli = si.restart-si.restart%seg, si.restartTLI
	}
	if n, ok := r.newestLocal(); ok {
		local := n.StartLSN(r.segSz)
		if _, partial := r.isPartial(n); !partial {
			local += seg // complete: the next one
		}
		if local < start || si.restart == 0 {
			start, tli = local, n.TLI
		}
	}
	return start, tli, nil
}

func (r *Receiver) newestLocal() (wal.Name, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best wal.Name
	found := false
	for n := range r.files {
		if !found || wal.Compare(n, best) > 0 {
			best, found = n, true
		}
	}
	return best, found
}

func (r *Receiver) isPartial(n wal.Name) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.files[n]
	return p, ok && strings.HasSuffix(p, partialSuffix)
}

// ensureHistory stores timeline tli's history file in the archive (from
// the server) when the archive does not have it.
func (r *Receiver) ensureHistory(ctx context.Context, srv *server, tli uint32) error {
	if tli <= 1 {
		return nil
	}
	n := wal.Name{Kind: wal.History, TLI: tli}
	if _, err := r.opt.Archive.Store.Stat(ctx, r.opt.Archive.Layout.WAL(n)); err == nil {
		return nil
	}
	h, err := pglogrepl.TimelineHistory(ctx, srv.conn, int32(tli))
	if err != nil {
		return fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
	}
	if _, err := wal.ParseHistory(tli, h.Content); err != nil {
		return err
	}
	obj, err := r.opt.Archive.Encoder().EncodeBytes(h.Content, r.opt.Archive.Layout.WAL(n))
	if err != nil {
		return err
	}
	if _, err := r.opt.Publish(ctx, n, obj); err != nil {
		return fmt.Errorf("store %s: %w", n, err)
	}
	return nil
}

// stream runs START_REPLICATION from start on timeline tli until the
// server ends the timeline (the next one and where it starts are
// returned) or something fails.
func (r *Receiver) stream(ctx context.Context, srv *server, start wal.LSN, tli uint32) (uint32, wal.LSN, error) {
	err := pglogrepl.StartReplication(ctx, srv.conn, r.opt.Slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{Timeline: int32(tli), Mode: pglogrepl.PhysicalReplication})
	if next, at, ok := pglogrepl.IsErrEndTimeline(err); ok {
		return uint32(next), wal.LSN(at), nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("START_REPLICATION at %s on timeline %d: %w", start, tli, err)
	}
	r.setStatus(func(s *Status) { s.Received, s.Flushed = start, start })
	var received, flushed = start, start
	lastStatus := time.Now()
	sendStatus := func() error {
		lastStatus = time.Now()
		return pglogrepl.SendStandbyStatusUpdate(ctx, srv.conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: pglogrepl.LSN(received),
			WALFlushPosition: pglogrepl.LSN(flushed),
			WALApplyPosition: pglogrepl.LSN(flushed),
		})
	}
	for {
		rctx, cancel := context.WithDeadline(ctx, lastStatus.Add(statusInterval))
		msg, err := srv.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			if pgconn.Timeout(err) {
				if err := sendStatus(); err != nil {
					return 0, 0, err
				}
				continue
			}
			return 0, 0, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return 0, 0, err
				}
				end, err := r.write(tli, wal.LSN(x.WALStart), x.WALData)
				if err != nil {
					return 0, 0, err
				}
				received = end
				// Durable before it is reported: a synchronous commit may
				// return the moment the server reads this.
				if err := r.flush(); err != nil {
					return 0, 0, err
				}
				flushed = received
				now := time.Now()
				r.setStatus(func(s *Status) {
					s.Received, s.Flushed, s.LastMessage = received, flushed, now
					s.ServerEnd, s.ServerTime = max(s.ServerEnd, wal.LSN(x.ServerWALEnd)), x.ServerTime
				})
				if err := sendStatus(); err != nil {
					return 0, 0, err
				}
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				k, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return 0, 0, err
				}
				now := time.Now()
				r.setStatus(func(s *Status) {
					s.ServerEnd, s.ServerTime, s.LastMessage = wal.LSN(k.ServerWALEnd), k.ServerTime, now
				})
				if k.ReplyRequested {
					if err := sendStatus(); err != nil {
						return 0, 0, err
					}
				}
			}
		case *pgproto3.CopyDone:
			// The server ends the timeline: it says where the next begins.
			if err := r.flush(); err != nil {
				return 0, 0, err
			}
			res, err := pglogrepl.SendStandbyCopyDone(ctx, srv.conn)
			if err != nil {
				return 0, 0, fmt.Errorf("end of timeline %d: %w", tli, err)
			}
			if res == nil {
				return 0, 0, fmt.Errorf("timeline %d ended without naming the next one", tli)
			}
			return uint32(res.Timeline), wal.LSN(res.LSN), nil
		case *pgproto3.ErrorResponse:
			return 0, 0, pgconn.ErrorResponseToPgError(m)
		}
	}
}

// current is the segment file being written.
type current struct {
	name  wal.Name
	f     *os.File
	dirty bool
}

// write puts WAL received at pos into the segment files, completing
// (and handing to the publisher) every segment it fills; it returns the
// position after the data.
func (r *Receiver) write(tli uint32, pos wal.LSN, data []byte) (wal.LSN, error) {
	size := wal.LSN(r.segSz)
	for len(data) > 0 {
		n := pos.Segment(tli, r.segSz)
		f, err := r.open(n)
		if err != nil {
			return pos, err
		}
		off := pos % size
		chunk := data[:min(len(data), int(size-off))]
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			return pos, fmt.Errorf("write received WAL into %s: %w", n, err)
		}
		r.cur.dirty = true
		pos += wal.LSN(len(chunk))
		data = data[len(chunk):]
		if pos%size == 0 {
			if err := r.complete(); err != nil {
				return pos, err
			}
		}
	}
	return pos, nil
}

// open returns the file of segment n, making it the current one.
func (r *Receiver) open(n wal.Name) (*os.File, error) {
	if r.cur.f != nil && r.cur.name == n {
		return r.cur.f, nil
	}
	r.closeCurrent(true)
	path := filepath.Join(r.opt.Dir, n.String()+partialSuffix)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != r.segSz {
		if err := f.Truncate(r.segSz); err != nil { // zero-filled, like PostgreSQL's new segments
			f.Close()
			return nil, err
		}
	}
	if err := durable.SyncDir(r.opt.Dir); err != nil {
		f.Close()
		return nil, err
	}
	r.cur = current{name: n, f: f}
	r.mu.Lock()
	r.files[n] = path
	r.curSeg = n
	r.mu.Unlock()
	return f, nil
}

// flush makes what was written durable.
func (r *Receiver) flush() error {
	if r.cur.f == nil || !r.cur.dirty {
		return nil
	}
	if err := r.cur.f.Sync(); err != nil {
		return fmt.Errorf("fsync received WAL %s: %w", r.cur.name, err)
	}
	r.cur.dirty = false
	return nil
}

// complete closes the current segment, which is full: it becomes a
// complete file for the publisher.
func (r *Receiver) complete() error {
	if err := r.flush(); err != nil {
		return err
	}
	n := r.cur.name
	from := filepath.Join(r.opt.Dir, n.String()+partialSuffix)
	to := filepath.Join(r.opt.Dir, n.String())
	r.cur.f.Close()
	r.cur = current{}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := durable.SyncDir(r.opt.Dir); err != nil {
		return err
	}
	r.mu.Lock()
	r.files[n] = to
	r.curSeg = wal.Name{}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// closeCurrent closes the current segment file, which stays a partial
// (flushed first when sync is set).
func (r *Receiver) closeCurrent(sync bool) {
	if r.cur.f == nil {
		return
	}
	if sync {
		r.flush()
	}
	r.cur.f.Close()
	r.cur = current{}
}
