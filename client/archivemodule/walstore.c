/*-------------------------------------------------------------------------
 *
 * walstore.c
 *	  walstore's archive module: archive_library = 'walstore'.
 *
 * PostgreSQL 15 calls an archive module inside the archiver, so archiving
 * needs no process per file. This module is a thin client: it hands each
 * file to the walpush agent (walpush agent, one per cluster, a long-lived
 * process holding warm encoders and connections) over a Unix socket and
 * returns true only when the agent answers that the file is durably
 * stored, exactly when walpush would have exited 0. Every check, the
 * upload, the push-ahead of other .ready files and the logging of details
 * happen in the agent.
 *
 * The protocol is one request line and one answer line per connection:
 *
 *	ARCHIVE <file> <absolute path>\n
 *	OK <detail>\n | WARNING <message>\n | ERROR <message>\n
 *
 * WARNING means archived, with something a DBA should read (a .backup
 * file kept beside another of the same name); it is logged at WARNING and
 * the call succeeds. ERROR and any failure to reach the agent log one
 * WARNING line and fail the call: PostgreSQL retries the file, as after a
 * failed archive_command. Nothing here allocates: the buffers are on the
 * stack and bounded. Nothing blocks for long: every wait is on the
 * archiver's latch as well as the socket, gives up on a shutdown request
 * or the postmaster's death, and is bounded by walstore.timeout.
 *
 * Settings (PGC_SIGHUP):
 *	walstore.agent_socket	the agent's socket
 *						(default /run/walstore/agent.sock)
 *	walstore.timeout	how long to wait for an answer (default 60s;
 *						the agent's own push deadline is shorter)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#if PG_VERSION_NUM >= 160000
#include "archive/archive_module.h"
#else
#include "postmaster/pgarch.h"
#endif

PG_MODULE_MAGIC;

/* An answer longer than this is refused (the agent keeps them shorter). */
#define WALSTORE_ANSWER_MAX 1024
/* A request: the verb, a file name (at most 64 bytes) and a path. */
#define WALSTORE_REQUEST_MAX (MAXPGPATH * 2 + 128)

static char *agent_socket = NULL;
static int	agent_timeout = 60;

void		_PG_init(void);

static bool
check_agent_socket(char **newval, void **extra, GucSource source)
{
	struct sockaddr_un sa;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* walstore_configured refuses it */
	if ((*newval)[0] != '/')
	{
		GUC_check_errdetail("walstore.agent_socket must be an absolute path.");
		return false;
	}
	if (strlen(*newval) >= sizeof(sa.sun_path))
	{
		GUC_check_errdetail("walstore.agent_socket is longer than a Unix socket path can be (%d bytes).",
							(int) sizeof(sa.sun_path) - 1);
		return false;
	}
	return true;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("walstore.agent_socket",
							   "Unix socket of the walpush agent that archives for this cluster.",
							   NULL,
							   &agent_socket,
							   "/run/walstore/agent.sock",
							   PGC_SIGHUP,
							   0,
							   check_agent_socket, NULL, NULL);
	DefineCustomIntVariable("walstore.timeout",
							"How long to wait for the walpush agent to store one file.",
							NULL,
							&agent_timeout,
							60, 1, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("walstore");
}

static bool
walstore_configured(void)
{
	return agent_socket != NULL && agent_socket[0] != '\0';
}

/*
 * The archiver learns that the server is shutting down from SIGUSR2 (one
 * last archiving cycle, then exit) and SIGTERM (ShutdownRequestPending).
 * SIGUSR2's flag is private to the archiver, so the module wraps its
 * handler to see it too: during that last cycle every wait is cut to
 * WALSTORE_STOP_GRACE_MS, and once the agent failed to answer in it the
 * remaining files fail at once. They stay .ready and are archived after
 * the next start; shutdown is never held up by an agent that hangs.
 */
#define WALSTORE_STOP_GRACE_MS 5000

static volatile sig_atomic_t stopping = false;
static bool stop_gave_up = false;
static pqsigfunc archiver_sigusr2 = NULL;

static void
walstore_sigusr2(SIGNAL_ARGS)
{
	stopping = true;
	if (archiver_sigusr2 != NULL)
		archiver_sigusr2(postgres_signal_arg);
}

static void
watch_stop_signal(void)
{
	static bool installed = false;
	pqsigfunc	prev;

	if (installed)
		return;
	installed = true;
	prev = pqsignal(SIGUSR2, walstore_sigusr2);
	if (prev == SIG_IGN || prev == SIG_DFL || prev == SIG_ERR)
	{
		/* nothing to chain to: put it back and only watch SIGTERM */
		pqsignal(SIGUSR2, prev == SIG_ERR ? SIG_DFL : prev);
		return;
	}
	archiver_sigusr2 = prev;
}

/*
 * wait_socket waits until sock is ready for events (WL_SOCKET_READABLE or
 * WL_SOCKET_WRITEABLE) or the deadline passes. It returns NULL when ready,
 * else why not.
 *
 * The archiver's latch is set by new .ready files and by the signals
 * above. A set latch is reset here (else the wait would spin) and
 * *latch_seen remembers it: the caller sets it again when done, so the
 * archiver's own loop sees every wake-up it would have seen. Meanwhile the
 * wait polls the flags every 100 ms.
 */
static const char *
wait_socket(pgsocket sock, int events, TimestampTz deadline, bool *latch_seen)
{
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		ms;
		int			wake = events | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
		int			rc;

		if (ShutdownRequestPending)
			return "the archiver is shutting down";
		if (stopping)
		{
			TimestampTz grace = TimestampTzPlusMilliseconds(now, WALSTORE_STOP_GRACE_MS);

			if (stop_gave_up)
				return "the server is shutting down and the walpush agent did not answer (the file stays .ready and is archived after the next start)";
			if (grace < deadline)
				deadline = grace;
		}
		ms = TimestampDifferenceMilliseconds(now, deadline);
		if (ms <= 0)
		{
			if (stopping)
			{
				stop_gave_up = true;
				return "the server is shutting down and the walpush agent did not answer within 5 s (the file stays .ready and is archived after the next start)";
			}
			return "timed out waiting for the walpush agent (walstore.timeout)";
		}
		if (*latch_seen)
			ms = Min(ms, 100);
		else
			wake |= WL_LATCH_SET;
		rc = WaitLatchOrSocket(MyLatch, wake, sock, ms, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			*latch_seen = true;
		}
		if (rc & events)
			return NULL;
	}
}

/*
 * ask sends one request and reads the one-line answer into answer (NUL
 * terminated, newline removed). It returns NULL on an answer, else what
 * went wrong, possibly formatted into errbuf.
 */
static const char *
ask(const char *request, size_t reqlen, char *answer, size_t answer_size,
	char *errbuf, size_t errbuf_size)
{
	struct sockaddr_un sa;
	pgsocket	sock;
	TimestampTz deadline;
	size_t		sent = 0;
	size_t		got = 0;
	const char *why = NULL;
	bool		latch_seen = false;

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) agent_timeout * 1000);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strlcpy(sa.sun_path, agent_socket, sizeof(sa.sun_path));

	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0)
	{
		snprintf(errbuf, errbuf_size, "cannot make a socket: %s", strerror(errno));
		return errbuf;
	}
	if (connect(sock, (struct sockaddr *) &sa, sizeof(sa)) < 0)
	{
		int			e = errno;

		if (e == ENOENT || e == ECONNREFUSED)
			snprintf(errbuf, errbuf_size, "the walpush agent is not running (%s: %s); start it (systemctl start walpush-agent) and PostgreSQL will retry",
					 agent_socket, strerror(e));
		else if (e == EAGAIN)
			snprintf(errbuf, errbuf_size, "the walpush agent at %s is not accepting connections (its queue is full)", agent_socket);
		else
			snprintf(errbuf, errbuf_size, "cannot reach the walpush agent at %s: %s", agent_socket, strerror(e));
		closesocket(sock);
		return errbuf;
	}
	while (sent < reqlen)
	{
		ssize_t		n = send(sock, request + sent, reqlen - sent, MSG_NOSIGNAL);

		if (n > 0)
		{
			sent += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		{
			if ((why = wait_socket(sock, WL_SOCKET_WRITEABLE, deadline, &latch_seen)) != NULL)
				goto out;
			continue;
		}
		snprintf(errbuf, errbuf_size, "cannot send to the walpush agent at %s: %s", agent_socket, strerror(errno));
		why = errbuf;
		goto out;
	}
	for (;;)
	{
		ssize_t		n = recv(sock, answer + got, answer_size - 1 - got, 0);
		char	   *nl;

		if (n > 0)
		{
			got += n;
			answer[got] = '\0';
			if ((nl = memchr(answer, '\n', got)) != NULL)
			{
				*nl = '\0';
				goto out;
			}
			if (got == answer_size - 1)
			{
				why = "the walpush agent's answer is too long";
				goto out;
			}
			continue;
		}
		if (n == 0)
		{
			why = "the walpush agent closed the connection without an answer (did it stop or crash?)";
			goto out;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		{
			if ((why = wait_socket(sock, WL_SOCKET_READABLE, deadline, &latch_seen)) != NULL)
				goto out;
			continue;
		}
		snprintf(errbuf, errbuf_size, "cannot read the walpush agent's answer: %s", strerror(errno));
		why = errbuf;
		goto out;
	}
out:
	closesocket(sock);
	if (latch_seen)
		SetLatch(MyLatch);
	return why;
}

static bool
walstore_archive(const char *file, const char *path)
{
	char		request[WALSTORE_REQUEST_MAX];
	char		answer[WALSTORE_ANSWER_MAX];
	char		errbuf[512];
	const char *why;
	int			len;

	watch_stop_signal();
	if (stopping && stop_gave_up)
	{
		ereport(WARNING, (errmsg("walstore: could not archive \"%s\": the server is shutting down and the walpush agent did not answer (the file stays .ready and is archived after the next start)", file)));
		return false;
	}

	/* The archiver runs in the data directory and passes a relative path. */
	if (is_absolute_path(path))
		len = snprintf(request, sizeof(request), "ARCHIVE %s %s\n", file, path);
	else
		len = snprintf(request, sizeof(request), "ARCHIVE %s %s/%s\n", file, DataDir, path);
	if (len < 0 || len >= (int) sizeof(request))
	{
		ereport(WARNING, (errmsg("walstore: could not archive \"%s\": its path is too long", file)));
		return false;
	}
	why = ask(request, len, answer, sizeof(answer), errbuf, sizeof(errbuf));
	if (why != NULL)
	{
		ereport(WARNING, (errmsg("walstore: could not archive \"%s\": %s", file, why)));
		return false;
	}
	if (strncmp(answer, "OK", 2) == 0 && (answer[2] == '\0' || answer[2] == ' '))
	{
		ereport(DEBUG1, (errmsg("walstore: archived \"%s\"%s", file, answer + 2)));
		return true;
	}
	if (strncmp(answer, "WARNING ", 8) == 0)
	{
		ereport(WARNING, (errmsg("walstore: archived \"%s\", but: %s", file, answer + 8)));
		return true;
	}
	if (strncmp(answer, "ERROR ", 6) == 0)
		ereport(WARNING, (errmsg("walstore: could not archive \"%s\": %s", file, answer + 6)));
	else
		ereport(WARNING, (errmsg("walstore: could not archive \"%s\": the walpush agent answered something else than OK, WARNING or ERROR", file)));
	return false;
}

#if PG_VERSION_NUM >= 160000

static bool
walstore_configured16(ArchiveModuleState *state)
{
	return walstore_configured();
}

static bool
walstore_archive16(ArchiveModuleState *state, const char *file, const char *path)
{
	return walstore_archive(file, path);
}

static const ArchiveModuleCallbacks walstore_callbacks = {
	.check_configured_cb = walstore_configured16,
	.archive_file_cb = walstore_archive16,
};

const ArchiveModuleCallbacks *
_PG_archive_module_init(void)
{
	return &walstore_callbacks;
}

#else

void		_PG_archive_module_init(ArchiveModuleCallbacks *cb);

void
_PG_archive_module_init(ArchiveModuleCallbacks *cb)
{
	cb->check_configured_cb = walstore_configured;
	cb->archive_file_cb = walstore_archive;
	cb->shutdown_cb = NULL;
}

#endif
