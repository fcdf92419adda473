# walstore — see README.md. Two commands set up a fresh Debian machine:
#   make run    walstored on the embedded default store (file://./walstore-data)
#   make test   every test, against real PostgreSQL 15 and a real MinIO

GO            ?= go
MINIO_MODULE  := github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
# MinIO is built once into a cache outside the checkout, so fresh clones reuse it.
CACHE_DIR     ?= $(HOME)/.cache/walstore
MINIO         ?= $(shell command -v minio 2>/dev/null || echo $(CACHE_DIR)/bin/minio)
NFPM_MODULE   := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
NFPM          ?= $(CACHE_DIR)/bin/nfpm
PG_BIN        := /usr/lib/postgresql/15/bin
TEST_TIMEOUT  ?= 40m
FUZZTIME      ?= 60s

export WALSTORE_MINIO := $(MINIO)
export WALSTORE_NFPM := $(NFPM)

.PHONY: all build module run test test-unit lint deps postgres postgres-dev systemd-analyze chromium patroni deb zstd pgbackrest minio bench fuzz fuzz-brief clean

all: build

VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT        ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -X github.com/walstore/walstore/internal/version.Version=$(VERSION) -X github.com/walstore/walstore/internal/version.Commit=$(COMMIT)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/walpush ./cmd/walfetch ./cmd/walstored

## module: the archive module (archive_library = 'walstore') for PostgreSQL
## 15, built with PGXS out of the tree into build/module/walstore.so
PG_CONFIG     ?= $(PG_BIN)/pg_config
module: postgres-dev
	rm -rf build/module && mkdir -p build/module
	cp client/archivemodule/walstore.c client/archivemodule/Makefile build/module/
	$(MAKE) -s -C build/module PG_CONFIG=$(PG_CONFIG) with_llvm=no walstore.so

## run: walstored on 127.0.0.1:7480 serving ./walstore-data
run: build
	./bin/walstored serve

## test: lint, every test with the race detector (installs what is missing),
## then each fuzz target briefly (its seed corpus already ran as plain tests)
test: deps lint
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz-brief

## test-unit: the tests that need neither PostgreSQL nor MinIO (seconds)
test-unit:
	$(GO) test -race ./wal/... ./store/... ./archive/... ./catalog/... ./retention/... ./recompress/... ./backupset/... ./receiver/... ./base/... ./client/... ./server/... ./internal/...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

deps: postgres postgres-dev minio systemd-analyze chromium patroni $(NFPM)

postgres:
	@test -x $(PG_BIN)/initdb || { \
		echo "installing postgresql-15"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15; }
	@id postgres >/dev/null

# postgresql-server-dev-15 (PGXS and the server headers) and a C compiler
# build the archive module.
postgres-dev:
	@test -f /usr/include/postgresql/15/server/postgres.h && command -v gcc >/dev/null && command -v make >/dev/null || { \
		echo "installing postgresql-server-dev-15 and gcc (for the archive module)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-server-dev-15 gcc make; }

# systemd-analyze verifies the units in deploy/systemd.
systemd-analyze:
	@command -v systemd-analyze >/dev/null || { \
		echo "installing systemd (for systemd-analyze)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y systemd; }

# chromium renders the status page in its test (headless).
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium (for the status page's browser test)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# patroni and etcd-server: the Patroni test runs a two-node cluster.
patroni:
	@command -v patroni >/dev/null && command -v etcd >/dev/null || { \
		echo "installing patroni and etcd-server (for the Patroni test)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patroni etcd-server python3-etcd; }

## deb: walstore_<version>_amd64.deb (goreleaser's nfpm, built once into the cache)
DEB_VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//; s/-/+/g' || true)
deb: $(NFPM) module
	rm -rf build/deb build/walstore_*.deb && mkdir -p build/deb/usr/bin build/deb/systemd
	$(GO) build -ldflags "$(LDFLAGS)" -o build/deb/usr/bin/ ./cmd/walpush ./cmd/walfetch ./cmd/walstored
	for f in deploy/systemd/*; do sed 's#/usr/local/bin/#/usr/bin/#g' $$f > build/deb/systemd/$$(basename $$f); done
	v="$(DEB_VERSION)"; [ -n "$$v" ] || v="0.0.0+git$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null).$(COMMIT)"; \
		DEB_VERSION="$$v" $(NFPM) package --config deploy/deb/nfpm.yaml --packager deb --target build/
	@ls build/*.deb

$(NFPM):
	@echo "building nfpm once into $(CACHE_DIR)/bin"
	mkdir -p $(CACHE_DIR)/bin
	GOBIN=$(CACHE_DIR)/bin GOFLAGS=-mod=mod $(GO) install $(NFPM_MODULE)

minio: $(MINIO)

$(MINIO):
	@echo "building MinIO once into $(CACHE_DIR)/bin (a few minutes, ~150 MB)"
	mkdir -p $(CACHE_DIR)/bin
	GOBIN=$(CACHE_DIR)/bin $(GO) install $(MINIO_MODULE)

# zstd: the bench compares the repository's size with the zstd command's.
zstd:
	@command -v zstd >/dev/null || { \
		echo "installing zstd (for the benchmark's size comparison)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y zstd; }

pgbackrest:
	@command -v pgbackrest >/dev/null || { \
		echo "installing pgbackrest (the benchmark's side-by-side figures)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbackrest; }

## bench: throughput figures against plain cp and pgBackRest, measured in the same run
bench: deps zstd pgbackrest
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./tests/bench/

## fuzz-brief: each fuzz target for a number of runs (a few seconds each),
## not a duration: Go 1.26's fuzz coordinator can report a spurious
## "context deadline exceeded" failure when a -fuzztime duration ends
## while a worker is busy (go.dev/issue/75804, fixed in Go 1.27); a count
## has no deadline to race. The counts differ because the targets' speeds do.
fuzz-brief:
	$(GO) test -run '^$$' -fuzz '^FuzzParseName$$' -fuzztime 250000x ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePageHeader$$' -fuzztime 300000x ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzParseHistory$$' -fuzztime 100000x ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzSegmentChecker$$' -fuzztime 4000x ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzOpenEnvelope$$' -fuzztime 200000x ./archive/envelope/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTokenFile$$' -fuzztime 5000x ./server/auth/

## fuzz: each fuzz target for FUZZTIME (make fuzz FUZZTIME=5m)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseName$$' -fuzztime $(FUZZTIME) ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePageHeader$$' -fuzztime $(FUZZTIME) ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzParseHistory$$' -fuzztime $(FUZZTIME) ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzSegmentChecker$$' -fuzztime $(FUZZTIME) ./wal/
	$(GO) test -run '^$$' -fuzz '^FuzzOpenEnvelope$$' -fuzztime $(FUZZTIME) ./archive/envelope/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTokenFile$$' -fuzztime $(FUZZTIME) ./server/auth/

clean:
	rm -rf bin build
