using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using FarmApi;
using Google.Protobuf;
using Microsoft.Data.Sqlite;
using ReferenceFarm.Protocol;

namespace ReferenceFarm.Server;

/// <summary>Who called: the name and kind of the bearer token.</summary>
/// <param name="Name">The token's name (a client's name, or "agent").</param>
/// <param name="Kind">"client" or "agent".</param>
/// <param name="Admin">Whether a client token may control every job.</param>
public sealed record Caller(string Name, string Kind, bool Admin);

/// <summary>The outcome of a job command.</summary>
public enum CommandResult
{
    /// <summary>Done.</summary>
    Done,

    /// <summary>No such job.</summary>
    NotFound,

    /// <summary>The job belongs to another client.</summary>
    Denied,

    /// <summary>The job is not in a state that allows it.</summary>
    WrongState,
}

/// <summary>The queue's durable state in SQLite (WAL): tokens, jobs, tasks, leases, outputs.</summary>
public sealed class Store : IAsyncDisposable
{
    /// <summary>Task states, as FarmApi's <see cref="JobState"/> numbers.</summary>
    private const int Queued = (int)JobState.Waiting;
    private const int Running = (int)JobState.Running;
    private const int Done = (int)JobState.Completed;
    private const int Cancelled = (int)JobState.Cancelled;
    private const int Failed = (int)JobState.Failed;

    private readonly SqliteConnection _connection;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly TimeProvider _time;
    private readonly string _databasePath;

    private Store(string databasePath, SqliteConnection connection, TimeProvider time)
    {
        _databasePath = databasePath;
        _connection = connection;
        _time = time;
    }

    /// <summary>Failures of one agent in one job after which it is kept off the job.</summary>
    public int BlocklistThreshold { get; set; } = 3;

    /// <summary>Opens (and creates) the database of a data folder.</summary>
    /// <param name="dataDirectory">The data folder.</param>
    /// <param name="time">The clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The store.</returns>
    public static async Task<Store> OpenAsync(string dataDirectory, TimeProvider time, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(dataDirectory);
        var path = Path.Combine(dataDirectory, "farm.db");
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false, DefaultTimeout = 30 }.ToString());
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        var store = new Store(path, connection, time);
        var hadCounts = Convert.ToInt64(await store.ScalarAsync("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='job_counts'",
            cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture) > 0;
        await store.ExecuteAsync(Schema, cancellationToken).ConfigureAwait(false);
        if (!hadCounts)
        {
            await store.ExecuteAsync(FillCounts, cancellationToken).ConfigureAwait(false);
        }

        return store;
    }

    /// <summary>The database file.</summary>
    public string DatabasePath => _databasePath;

    private const string Schema = """
        PRAGMA journal_mode=WAL;
        PRAGMA synchronous=NORMAL;
        PRAGMA busy_timeout=30000;
        CREATE TABLE IF NOT EXISTS tokens(name TEXT PRIMARY KEY, kind TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, admin INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS staged(context_id TEXT NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY(context_id, path));
        CREATE TABLE IF NOT EXISTS jobs(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, context_id TEXT UNIQUE, name TEXT NOT NULL,
            priority INTEGER NOT NULL, max_attempts INTEGER NOT NULL, submitter TEXT NOT NULL, owner TEXT NOT NULL, labels TEXT NOT NULL,
            environment TEXT NOT NULL, submitted_ms INTEGER NOT NULL, started_ms INTEGER, completed_ms INTEGER, stopped INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS tasks(job_seq INTEGER NOT NULL, idx INTEGER NOT NULL, id TEXT NOT NULL, spec BLOB NOT NULL, host TEXT NOT NULL,
            priority INTEGER NOT NULL, state INTEGER NOT NULL, pending INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            lease INTEGER NOT NULL DEFAULT 0, agent TEXT, lease_expiry INTEGER, exit_code INTEGER, started_ms INTEGER, completed_ms INTEGER,
            message TEXT, PRIMARY KEY(job_seq, idx));
        CREATE INDEX IF NOT EXISTS ix_tasks_ready ON tasks(state, pending, priority DESC, job_seq, idx);
        CREATE INDEX IF NOT EXISTS ix_tasks_job_state ON tasks(job_seq, state);
        CREATE INDEX IF NOT EXISTS ix_tasks_job_id ON tasks(job_seq, id);
        CREATE INDEX IF NOT EXISTS ix_tasks_lease ON tasks(state, lease_expiry);
        CREATE TABLE IF NOT EXISTS deps(job_seq INTEGER NOT NULL, task_idx INTEGER NOT NULL, dep_idx INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS ix_deps_dep ON deps(job_seq, dep_idx);
        CREATE INDEX IF NOT EXISTS ix_deps_task ON deps(job_seq, task_idx);
        CREATE TABLE IF NOT EXISTS job_files(job_seq INTEGER NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY(job_seq, path));
        CREATE TABLE IF NOT EXISTS outputs(job_seq INTEGER NOT NULL, task_idx INTEGER NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
            PRIMARY KEY(job_seq, task_idx, path));
        CREATE TABLE IF NOT EXISTS produced(job_seq INTEGER NOT NULL, task_idx INTEGER NOT NULL, path TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
            modified_us INTEGER NOT NULL, PRIMARY KEY(job_seq, task_idx, path));
        CREATE INDEX IF NOT EXISTS ix_produced_hash ON produced(hash);
        CREATE INDEX IF NOT EXISTS ix_job_files_hash ON job_files(hash);
        CREATE INDEX IF NOT EXISTS ix_outputs_hash ON outputs(hash);
        CREATE INDEX IF NOT EXISTS ix_staged_hash ON staged(hash);
        CREATE TABLE IF NOT EXISTS failures(job_seq INTEGER NOT NULL, agent TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY(job_seq, agent));
        CREATE TABLE IF NOT EXISTS completions(job_seq INTEGER NOT NULL, task_idx INTEGER NOT NULL, lease INTEGER NOT NULL, agent TEXT NOT NULL, at_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS job_counts(job_seq INTEGER NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY(job_seq, state)) WITHOUT ROWID;
        CREATE TRIGGER IF NOT EXISTS tr_tasks_state AFTER UPDATE OF state ON tasks WHEN old.state<>new.state BEGIN
            UPDATE job_counts SET n=n+(CASE state WHEN new.state THEN 1 ELSE -1 END) WHERE job_seq=new.job_seq AND state IN (old.state, new.state);
        END;
        """;

    // A job's task counts by state, kept by tr_tasks_state as tasks change state, so reading a job's progress does not count its
    // tasks (a 5,000-task job polled while it runs made every poll read 5,000 index entries). Filled once for older databases.
    private const string CountStates = "(SELECT 0 AS state UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4)";

    private const string FillCounts = $"""
        INSERT OR REPLACE INTO job_counts(job_seq, state, n)
        SELECT j.seq, s.state, (SELECT count(*) FROM tasks t WHERE t.job_seq=j.seq AND t.state=s.state) FROM jobs j, {CountStates} s;
        """;

    // ---------------------------------------------------------------- tokens

    /// <summary>Makes a new random token.</summary>
    /// <returns>The token text.</returns>
    public static string NewToken() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string HashToken(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>Adds (or replaces) a named token.</summary>
    /// <param name="name">The name.</param>
    /// <param name="kind">"client" or "agent".</param>
    /// <param name="admin">Whether it is an admin client token.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The new token text (only its hash is stored).</returns>
    public async Task<string> AddTokenAsync(string name, string kind, bool admin, CancellationToken cancellationToken = default)
    {
        var token = NewToken();
        await WithGateAsync(async () =>
        {
            await ExecuteAsync("INSERT OR REPLACE INTO tokens(name, kind, hash, admin) VALUES($n, $k, $h, $a)", cancellationToken,
                ("$n", name), ("$k", kind), ("$h", HashToken(token)), ("$a", admin ? 1 : 0)).ConfigureAwait(false);
            _callers.Clear();
            return 0;
        }, cancellationToken).ConfigureAwait(false);
        return token;
    }

    /// <summary>Revokes a named token.</summary>
    /// <param name="name">The name.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>Whether a token was removed.</returns>
    public Task<bool> RemoveTokenAsync(string name, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var removed = await ExecuteAsync("DELETE FROM tokens WHERE name=$n", cancellationToken, ("$n", name)).ConfigureAwait(false) > 0;
            _callers.Clear();
            return removed;
        }, cancellationToken);

    /// <summary>Whether any token exists yet.</summary>
    /// <param name="kind">The kind.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns><see langword="true"/> when one does.</returns>
    public Task<bool> HasTokenAsync(string kind, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () => Convert.ToInt64(await ScalarAsync("SELECT count(*) FROM tokens WHERE kind=$k", cancellationToken, ("$k", kind))
            .ConfigureAwait(false), CultureInfo.InvariantCulture) > 0, cancellationToken);

    /// <summary>Whether a token of this name exists.</summary>
    /// <param name="name">The name.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns><see langword="true"/> when one does.</returns>
    public Task<bool> HasTokenNamedAsync(string name, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () => Convert.ToInt64(await ScalarAsync("SELECT count(*) FROM tokens WHERE name=$n", cancellationToken, ("$n", name))
            .ConfigureAwait(false), CultureInfo.InvariantCulture) > 0, cancellationToken);

    /// <summary>Finds who holds a token; read every call so a revoked token stops working at once.</summary>
    /// <param name="token">The bearer token.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The caller, or null for an unknown token.</returns>
    public Task<Caller?> AuthenticateAsync(string token, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            // Callers are remembered until the tokens table may have changed: here (AddToken, RemoveToken clear them), or in another
            // process (add-client, remove-client while the server runs), which changes the database's data_version.
            var version = Convert.ToInt64(await ScalarAsync("PRAGMA data_version", cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
            if (version != _callersVersion || _callers.Count > 1000)
            {
                _callers.Clear();
                _callersVersion = version;
            }

            var hash = HashToken(token);
            if (_callers.TryGetValue(hash, out var known))
            {
                return known;
            }

            var command = Command("SELECT name, kind, admin FROM tokens WHERE hash=$h", ("$h", hash));
            using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            var caller = await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
                ? new Caller(reader.GetString(0), reader.GetString(1), reader.GetInt64(2) != 0)
                : null;
            _callers[hash] = caller;
            return caller;
        }, cancellationToken);

    private readonly Dictionary<string, Caller?> _callers = new(StringComparer.Ordinal);
    private long _callersVersion = -1;

    // ---------------------------------------------------------------- staging and submission

    /// <summary>Records which blob each relative path of a render context's job folder is.</summary>
    /// <param name="contextId">The render context.</param>
    /// <param name="files">The files.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task.</returns>
    public Task StageAsync(string contextId, IEnumerable<FileEntry> files, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            using var transaction = Begin();
            var command = Command("INSERT OR REPLACE INTO staged(context_id, path, hash, size) VALUES($c, $p, $h, $s)",
                ("$c", contextId), ("$p", ""), ("$h", ""), ("$s", 0L));
            foreach (var file in files)
            {
                command.Parameters["$p"].Value = Normalize(file.RelativePath);
                command.Parameters["$h"].Value = file.Hash;
                command.Parameters["$s"].Value = file.Size;
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            transaction.Commit();
            return 0;
        }, cancellationToken);

    /// <summary>Normalizes a job-folder relative path to forward slashes.</summary>
    /// <param name="path">The path.</param>
    /// <returns>The path with '/' separators and no leading "./".</returns>
    public static string Normalize(string path)
    {
        var normalized = path.Replace('\\', '/');
        while (normalized.StartsWith("./", StringComparison.Ordinal))
        {
            normalized = normalized[2..];
        }

        return normalized;
    }

    /// <summary>Submits a job, durably; a second submission of one render context returns the first job.</summary>
    /// <param name="request">The request (validated by the caller).</param>
    /// <param name="owner">The submitting token's name.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job id and whether it already existed; or an error naming a file that was never staged.</returns>
    public Task<(string JobId, bool Existing, string? Error)> SubmitAsync(SubmitRequest request, string owner, CancellationToken cancellationToken = default) =>
        WithGateAsync<(string, bool, string?)>(async () =>
        {
            var existing = await ScalarAsync("SELECT id FROM jobs WHERE context_id=$c", cancellationToken, ("$c", request.ContextId)).ConfigureAwait(false);
            if (existing is string existingId)
            {
                return (existingId, true, null);
            }

            var staged = new Dictionary<string, (string Hash, long Size)>(StringComparer.Ordinal);
            var command = Command("SELECT path, hash, size FROM staged WHERE context_id=$c", ("$c", request.ContextId));
            using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    staged[reader.GetString(0)] = (reader.GetString(1), reader.GetInt64(2));
                }
            }

            foreach (var file in request.Files)
            {
                if (!staged.ContainsKey(Normalize(file)))
                {
                    return (string.Empty, false, $"files: '{file}' was not staged for render context {request.ContextId} (CopyRenderFiles first)");
                }
            }

            var jobId = "rf-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
            var now = NowMs();
            // Accepted means durable, even across a power cut: this commit is synced to disk (the rest of the state may lag).
            await ExecuteAsync("PRAGMA synchronous=FULL", cancellationToken).ConfigureAwait(false);
            using var transaction = Begin();
            var insertJob = Command("""
                INSERT INTO jobs(id, context_id, name, priority, max_attempts, submitter, owner, labels, environment, submitted_ms, total)
                VALUES($id, $c, $n, $p, $m, $s, $o, $l, $e, $t, $total)
                """, ("$id", jobId), ("$c", request.ContextId), ("$n", request.Name), ("$p", request.Priority), ("$m", request.MaxAttempts),
                ("$s", string.IsNullOrEmpty(request.Submitter) ? owner : request.Submitter), ("$o", owner),
                ("$l", JsonSerializer.Serialize(request.Labels.ToDictionary())), ("$e", JsonSerializer.Serialize(request.Environment.ToDictionary())),
                ("$t", now), ("$total", request.Tasks.Count));
            {
                await insertJob.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            var seq = Convert.ToInt64(await ScalarAsync("SELECT last_insert_rowid()", cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
            var indexById = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var i = 0; i < request.Tasks.Count; i++)
            {
                indexById[request.Tasks[i].Id] = i;
            }

            var insertTask = Command("""
                INSERT INTO tasks(job_seq, idx, id, spec, host, priority, state, pending) VALUES($j, $i, $id, $spec, $h, $p, 0, $pending)
                """, ("$j", seq), ("$i", 0), ("$id", ""), ("$spec", Array.Empty<byte>()), ("$h", ""), ("$p", request.Priority), ("$pending", 0));
            var insertDep = Command("INSERT INTO deps(job_seq, task_idx, dep_idx) VALUES($j, $t, $d)", ("$j", seq), ("$t", 0), ("$d", 0));
            {
                for (var i = 0; i < request.Tasks.Count; i++)
                {
                    var task = request.Tasks[i];
                    var dependencies = task.DependsOn.Distinct(StringComparer.Ordinal).ToList();
                    insertTask.Parameters["$i"].Value = i;
                    insertTask.Parameters["$id"].Value = task.Id;
                    insertTask.Parameters["$spec"].Value = task.ToByteArray();
                    insertTask.Parameters["$h"].Value = string.IsNullOrEmpty(task.Host) ? "command" : task.Host;
                    insertTask.Parameters["$pending"].Value = dependencies.Count;
                    await insertTask.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    foreach (var dependency in dependencies)
                    {
                        insertDep.Parameters["$t"].Value = i;
                        insertDep.Parameters["$d"].Value = indexById[dependency];
                        await insertDep.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    }
                }
            }

            var files = Command("""
                INSERT OR REPLACE INTO job_files(job_seq, path, hash, size) SELECT $j, path, hash, size FROM staged WHERE context_id=$c
                """, ("$j", seq), ("$c", request.ContextId));
            {
                await files.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await ExecuteAsync($"INSERT INTO job_counts(job_seq, state, n) SELECT $j, state, CASE state WHEN 0 THEN $n ELSE 0 END FROM {CountStates}",
                cancellationToken, ("$j", seq), ("$n", request.Tasks.Count)).ConfigureAwait(false);

            transaction.Commit();
            await ExecuteAsync("PRAGMA synchronous=NORMAL", CancellationToken.None).ConfigureAwait(false);
            return (jobId, false, null);
        }, cancellationToken);

    // ---------------------------------------------------------------- reading

    private sealed record JobRow(long Seq, string Id, string Name, int Priority, int MaxAttempts, string Submitter, string Owner, string Labels,
        string Environment, long SubmittedMs, long? StartedMs, long? CompletedMs, bool Stopped, int Total, string? ContextId);

    private const string JobColumns = "seq, id, name, priority, max_attempts, submitter, owner, labels, environment, submitted_ms, started_ms, completed_ms, stopped, total, context_id";

    private static JobRow ReadJob(SqliteDataReader reader) => new(
        reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetInt32(4), reader.GetString(5), reader.GetString(6),
        reader.GetString(7), reader.GetString(8), reader.GetInt64(9), reader.IsDBNull(10) ? null : reader.GetInt64(10),
        reader.IsDBNull(11) ? null : reader.GetInt64(11), reader.GetInt64(12) != 0, reader.GetInt32(13), reader.IsDBNull(14) ? null : reader.GetString(14));

    private async Task<JobRow?> FindJobAsync(string jobId, CancellationToken cancellationToken)
    {
        var command = Command($"SELECT {JobColumns} FROM jobs WHERE id=$id", ("$id", jobId));
        using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? ReadJob(reader) : null;
    }

    private async Task<int[]> CountsAsync(long seq, CancellationToken cancellationToken)
    {
        var counts = new int[5];
        var command = Command("SELECT state, n FROM job_counts WHERE job_seq=$j", ("$j", seq));
        using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            counts[reader.GetInt32(0)] = reader.GetInt32(1);
        }

        return counts;
    }

    private static int StateOf(JobRow job, int[] counts)
    {
        if (job.Stopped)
        {
            return Cancelled;
        }

        if (counts[Done] == job.Total)
        {
            return Done;
        }

        if (counts[Running] == 0 && counts[Queued] == 0)
        {
            return counts[Failed] > 0 ? Failed : Cancelled;
        }

        return counts[Running] > 0 || counts[Done] > 0 || counts[Failed] > 0 || counts[Cancelled] > 0 ? Running : Queued;
    }

    private static JobInfo ToInfo(JobRow job, int[] counts)
    {
        var info = new JobInfo
        {
            Id = job.Id, Name = job.Name, State = StateOf(job, counts), Total = job.Total, Completed = counts[Done], Running = counts[Running],
            Failed = counts[Failed], SubmittedAtMs = job.SubmittedMs, StartedAtMs = job.StartedMs ?? 0, CompletedAtMs = job.CompletedMs ?? 0,
            ContextId = job.ContextId ?? string.Empty, Submitter = job.Submitter, Owner = job.Owner, Priority = job.Priority,
        };
        foreach (var pair in JsonSerializer.Deserialize<Dictionary<string, string>>(job.Labels) ?? [])
        {
            info.Labels[pair.Key] = pair.Value;
        }

        return info;
    }

    /// <summary>Lists jobs, newest first.</summary>
    /// <param name="request">The filter.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The jobs.</returns>
    public Task<List<JobInfo>> GetJobsAsync(GetJobsRequest request, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var sql = new StringBuilder($"SELECT {JobColumns} FROM jobs WHERE 1=1");
            var parameters = new List<(string, object?)>();
            if (!string.IsNullOrEmpty(request.ContextId))
            {
                sql.Append(" AND context_id=$c");
                parameters.Add(("$c", request.ContextId));
            }

            if (!string.IsNullOrEmpty(request.Submitter))
            {
                sql.Append(" AND submitter=$s");
                parameters.Add(("$s", request.Submitter));
            }

            sql.Append(" ORDER BY seq DESC");
            var rows = new List<JobRow>();
            var command = Command(sql.ToString(), [.. parameters]);
            using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    rows.Add(ReadJob(reader));
                }
            }

            var result = new List<JobInfo>();
            foreach (var row in rows)
            {
                var info = ToInfo(row, await CountsAsync(row.Seq, cancellationToken).ConfigureAwait(false));
                if (request.State >= 0 && info.State != request.State)
                {
                    continue;
                }

                result.Add(info);
                if (request.Limit > 0 && result.Count >= request.Limit)
                {
                    break;
                }
            }

            return result;
        }, cancellationToken);

    /// <summary>Reads one job.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job, or null.</returns>
    public Task<JobInfo?> GetJobAsync(string jobId, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            return row is null ? null : ToInfo(row, await CountsAsync(row.Seq, cancellationToken).ConfigureAwait(false));
        }, cancellationToken);

    /// <summary>Reads the tasks of a job in the request's order.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The tasks, or null when the job does not exist.</returns>
    public Task<List<Protocol.TaskInfo>?> GetTasksAsync(string jobId, CancellationToken cancellationToken = default) =>
        WithGateAsync<List<Protocol.TaskInfo>?>(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            if (row is null)
            {
                return null;
            }

            var tasks = new List<Protocol.TaskInfo>(row.Total);
            var command = Command("""
                SELECT id, state, attempts, agent, exit_code, started_ms, completed_ms, message, spec FROM tasks WHERE job_seq=$j ORDER BY idx
                """, ("$j", row.Seq));
            using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var info = new Protocol.TaskInfo
                {
                    Id = reader.GetString(0), State = reader.GetInt32(1), Attempts = reader.GetInt32(2), Node = reader.IsDBNull(3) ? string.Empty : reader.GetString(3),
                    HasExitCode = !reader.IsDBNull(4), ExitCode = reader.IsDBNull(4) ? 0 : reader.GetInt32(4),
                    StartedAtMs = reader.IsDBNull(5) ? 0 : reader.GetInt64(5), CompletedAtMs = reader.IsDBNull(6) ? 0 : reader.GetInt64(6),
                    Message = reader.IsDBNull(7) ? string.Empty : reader.GetString(7),
                };
                var spec = Protocol.TaskSpec.Parser.ParseFrom((byte[])reader.GetValue(8));
                info.Labels.Add(spec.Labels);
                tasks.Add(info);
            }

            return tasks;
        }, cancellationToken);

    /// <summary>What a log read needs: the job's sequence number, whether it is terminal, and the task's index.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="taskId">The task id, or empty for the job log.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>Null when the job (or task) does not exist.</returns>
    public Task<(long Seq, bool Terminal, int? TaskIndex, bool TaskTerminal)?> FindForLogAsync(string jobId, string taskId, CancellationToken cancellationToken = default) =>
        WithGateAsync<(long, bool, int?, bool)?>(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            if (row is null)
            {
                return null;
            }

            var terminal = StateOf(row, await CountsAsync(row.Seq, cancellationToken).ConfigureAwait(false)) is Done or Failed or Cancelled;
            if (string.IsNullOrEmpty(taskId))
            {
                return (row.Seq, terminal, null, terminal);
            }

            var command = Command("SELECT idx, state FROM tasks WHERE job_seq=$j AND id=$t", ("$j", row.Seq), ("$t", taskId));
            using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                return null;
            }

            return (row.Seq, terminal, reader.GetInt32(0), reader.GetInt32(1) is Done or Failed or Cancelled);
        }, cancellationToken);

    /// <summary>The outputs of the completed tasks of a job.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The outputs, or null when the job does not exist.</returns>
    public Task<List<OutputEntry>?> ListOutputsAsync(string jobId, CancellationToken cancellationToken = default) =>
        WithGateAsync<List<OutputEntry>?>(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            if (row is null)
            {
                return null;
            }

            var outputs = new List<OutputEntry>();
            var command = Command("""
                SELECT t.id, o.path, o.hash, o.size FROM outputs o JOIN tasks t ON t.job_seq=o.job_seq AND t.idx=o.task_idx
                WHERE o.job_seq=$j AND t.state=2 ORDER BY o.task_idx, o.path
                """, ("$j", row.Seq));
            using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                outputs.Add(new OutputEntry { TaskId = reader.GetString(0), RelativePath = reader.GetString(1), Hash = reader.GetString(2), Size = reader.GetInt64(3) });
            }

            return outputs;
        }, cancellationToken);

    // ---------------------------------------------------------------- control

    private static bool MayControl(JobRow job, Caller caller) => caller.Admin || string.Equals(job.Owner, caller.Name, StringComparison.Ordinal);

    /// <summary>Stops a job: queued and running tasks are cancelled (agents kill theirs on their next heartbeat).</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="caller">Who asks.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The result.</returns>
    /// <param name="beforeCommit">Called with the job's sequence number before the change is committed (the log line goes in first).</param>
    public Task<CommandResult> StopAsync(string jobId, Caller caller, Func<long, Task>? beforeCommit = null, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            if (row is null)
            {
                return CommandResult.NotFound;
            }

            if (!MayControl(row, caller))
            {
                return CommandResult.Denied;
            }

            var state = StateOf(row, await CountsAsync(row.Seq, cancellationToken).ConfigureAwait(false));
            if (state is Done or Failed)
            {
                return CommandResult.Done;
            }

            using var transaction = Begin();
            await ExecuteAsync("UPDATE tasks SET state=3, lease_expiry=NULL, message='stopped', completed_ms=$t WHERE job_seq=$j AND state IN (0, 1)",
                cancellationToken, ("$j", row.Seq), ("$t", NowMs())).ConfigureAwait(false);
            await ExecuteAsync("UPDATE jobs SET stopped=1, completed_ms=$t WHERE seq=$j", cancellationToken, ("$j", row.Seq), ("$t", NowMs())).ConfigureAwait(false);
            if (beforeCommit is not null)
            {
                await beforeCommit(row.Seq).ConfigureAwait(false);
            }

            transaction.Commit();
            return CommandResult.Done;
        }, cancellationToken);

    /// <summary>Runs the failed and cancelled tasks of a job again (or the ones named); completed tasks are kept.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="taskIds">The tasks to run again, or empty.</param>
    /// <param name="caller">Who asks.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The result, and the first unknown task id.</returns>
    public Task<(CommandResult Result, string? UnknownTask)> RestartAsync(string jobId, IReadOnlyCollection<string> taskIds, Caller caller,
        CancellationToken cancellationToken = default) =>
        WithGateAsync<(CommandResult, string?)>(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            if (row is null)
            {
                return (CommandResult.NotFound, null);
            }

            if (!MayControl(row, caller))
            {
                return (CommandResult.Denied, null);
            }

            using var transaction = Begin();
            if (taskIds.Count == 0)
            {
                await ExecuteAsync("""
                    UPDATE tasks SET state=0, attempts=0, agent=NULL, exit_code=NULL, started_ms=NULL, completed_ms=NULL, message=NULL, lease_expiry=NULL
                    WHERE job_seq=$j AND state IN (3, 4)
                    """, cancellationToken, ("$j", row.Seq)).ConfigureAwait(false);
            }
            else
            {
                foreach (var taskId in taskIds)
                {
                    var changed = await ExecuteAsync("""
                        UPDATE tasks SET state=0, attempts=0, agent=NULL, exit_code=NULL, started_ms=NULL, completed_ms=NULL, message=NULL, lease_expiry=NULL,
                        lease=lease+1 WHERE job_seq=$j AND id=$t
                        """, cancellationToken, ("$j", row.Seq), ("$t", taskId)).ConfigureAwait(false);
                    if (changed == 0)
                    {
                        transaction.Rollback();
                        return (CommandResult.NotFound, taskId);
                    }
                }
            }

            await ExecuteAsync("""
                UPDATE tasks SET pending=(SELECT count(*) FROM deps d JOIN tasks t2 ON t2.job_seq=d.job_seq AND t2.idx=d.dep_idx
                    WHERE d.job_seq=tasks.job_seq AND d.task_idx=tasks.idx AND t2.state<>2)
                WHERE job_seq=$j AND state=0
                """, cancellationToken, ("$j", row.Seq)).ConfigureAwait(false);
            await ExecuteAsync("UPDATE jobs SET stopped=0, completed_ms=NULL WHERE seq=$j", cancellationToken, ("$j", row.Seq)).ConfigureAwait(false);
            await ExecuteAsync("DELETE FROM failures WHERE job_seq=$j", cancellationToken, ("$j", row.Seq)).ConfigureAwait(false);
            transaction.Commit();
            return (CommandResult.Done, null);
        }, cancellationToken);

    /// <summary>Deletes a terminal job with its records.</summary>
    /// <param name="jobId">The job id.</param>
    /// <param name="caller">Who asks.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The result, the job's sequence number, and the blobs it referred to (candidates for removal).</returns>
    public Task<(CommandResult Result, long Seq, List<string> Blobs)> DeleteAsync(string jobId, Caller caller, CancellationToken cancellationToken = default) =>
        WithGateAsync<(CommandResult, long, List<string>)>(async () =>
        {
            var row = await FindJobAsync(jobId, cancellationToken).ConfigureAwait(false);
            if (row is null)
            {
                return (CommandResult.NotFound, 0, []);
            }

            if (!MayControl(row, caller))
            {
                return (CommandResult.Denied, row.Seq, []);
            }

            if (StateOf(row, await CountsAsync(row.Seq, cancellationToken).ConfigureAwait(false)) is not (Done or Failed or Cancelled))
            {
                return (CommandResult.WrongState, row.Seq, []);
            }

            var blobs = new List<string>();
            var find = Command("""
                SELECT hash FROM job_files WHERE job_seq=$j UNION SELECT hash FROM outputs WHERE job_seq=$j
                UNION SELECT hash FROM staged WHERE context_id=$c UNION SELECT hash FROM produced WHERE job_seq=$j
                """, ("$j", row.Seq), ("$c", row.ContextId ?? string.Empty));
            using (var reader = await find.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    blobs.Add(reader.GetString(0));
                }
            }

            using var transaction = Begin();
            foreach (var table in new[] { "tasks", "deps", "job_files", "outputs", "produced", "failures", "completions", "job_counts" })
            {
                await ExecuteAsync($"DELETE FROM {table} WHERE job_seq=$j", cancellationToken, ("$j", row.Seq)).ConfigureAwait(false);
            }

            await ExecuteAsync("DELETE FROM staged WHERE context_id=$c", cancellationToken, ("$c", row.ContextId ?? string.Empty)).ConfigureAwait(false);
            await ExecuteAsync("DELETE FROM jobs WHERE seq=$j", cancellationToken, ("$j", row.Seq)).ConfigureAwait(false);
            _jobFacts.Remove(row.Seq);
            transaction.Commit();
            return (CommandResult.Done, row.Seq, blobs);
        }, cancellationToken);

    // ---------------------------------------------------------------- agents

    /// <summary>A task handed to an agent.</summary>
    /// <param name="Reply">What the agent gets.</param>
    /// <param name="JobSeq">The job's sequence number.</param>
    /// <param name="TaskIndex">The task's index.</param>
    public sealed record Leased(LeaseReply Reply, long JobSeq, int TaskIndex);

    /// <summary>Leases the next runnable task to an agent: priority, then submission order, hosts it has, jobs it is not blocked from.</summary>
    /// <param name="agent">The agent's name.</param>
    /// <param name="hosts">The hosts it can run.</param>
    /// <param name="lease">The lease length.</param>
    /// <param name="applyBlocklist">Whether to keep the agent off jobs it failed too often (false when no other agent could take them).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The leased task, or null when none is runnable.</returns>
    public Task<Leased?> LeaseAsync(string agent, IReadOnlyList<string> hosts, TimeSpan lease, bool applyBlocklist = true,
        CancellationToken cancellationToken = default) =>
        LeaseAsync(new LeaseAsk(agent, hosts, lease, applyBlocklist), cancellationToken);

    /// <summary>Leases the next runnable task to an agent (see the overload).</summary>
    /// <param name="ask">Who asks, for what.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The leased task, or null when none is runnable.</returns>
    public Task<Leased?> LeaseAsync(LeaseAsk ask, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            using var transaction = Begin();
            var leased = await LeaseCoreAsync(ask, cancellationToken).ConfigureAwait(false);
            transaction.Commit();
            return leased;
        }, cancellationToken);

    /// <summary>What an agent asks for when it leases.</summary>
    /// <param name="Agent">The agent's name.</param>
    /// <param name="Hosts">The hosts it can run.</param>
    /// <param name="Lease">The lease length.</param>
    /// <param name="ApplyBlocklist">Whether to keep the agent off jobs it failed too often.</param>
    public sealed record LeaseAsk(string Agent, IReadOnlyList<string> Hosts, TimeSpan Lease, bool ApplyBlocklist);

    /// <summary>Leases one task within the caller's gate and transaction.</summary>
    private async Task<Leased?> LeaseCoreAsync(LeaseAsk ask, CancellationToken cancellationToken)
    {
        var leased = new List<Leased>(1);
        await LeaseCoreAsync(ask, 1, leased, cancellationToken).ConfigureAwait(false);
        return leased.Count == 0 ? null : leased[0];
    }

    /// <summary>What does not change about a job once submitted, kept so a lease does not read it again for every task.</summary>
    private sealed record JobFacts(string Id, Dictionary<string, string> Environment, bool HasFiles, bool HasDeps);

    private readonly Dictionary<long, JobFacts> _jobFacts = [];

    private async Task<JobFacts> FactsAsync(long seq, CancellationToken cancellationToken)
    {
        if (_jobFacts.TryGetValue(seq, out var facts))
        {
            return facts;
        }

        if (_jobFacts.Count >= 256)
        {
            _jobFacts.Clear();
        }

        var read = Command("""
            SELECT id, environment, EXISTS(SELECT 1 FROM job_files WHERE job_seq=$j), EXISTS(SELECT 1 FROM deps WHERE job_seq=$j) FROM jobs WHERE seq=$j
            """, ("$j", seq));
        using var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        facts = new JobFacts(reader.GetString(0), JsonSerializer.Deserialize<Dictionary<string, string>>(reader.GetString(1)) ?? [],
            reader.GetInt64(2) != 0, reader.GetInt64(3) != 0);
        _jobFacts[seq] = facts;
        return facts;
    }

    /// <summary>Leases up to <paramref name="max"/> runnable tasks in order, within the caller's gate and transaction.</summary>
    private async Task LeaseCoreAsync(LeaseAsk ask, int max, List<Leased> leased, CancellationToken cancellationToken)
    {
        var (agent, hosts, lease, applyBlocklist) = ask;
        if (hosts.Count == 0 || max <= 0)
        {
            return;
        }

        var hostParameters = hosts.Select((_, i) => $"$h{i}").ToArray();
        var parameters = new List<(string, object?)> { ("$a", agent), ("$n", applyBlocklist ? BlocklistThreshold : int.MaxValue), ("$m", max) };
        parameters.AddRange(hosts.Select((h, i) => ($"$h{i}", (object?)h)));
        var found = new List<(long Seq, int Idx)>(max);
        var find = Command($"""
            SELECT job_seq, idx FROM tasks INDEXED BY ix_tasks_ready
            WHERE state=0 AND pending=0 AND host IN ({string.Join(", ", hostParameters)})
              AND job_seq NOT IN (SELECT job_seq FROM failures WHERE agent=$a AND n>=$n)
            ORDER BY priority DESC, job_seq, idx LIMIT $m
            """, [.. parameters]);
        using (var reader = await find.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                found.Add((reader.GetInt64(0), reader.GetInt32(1)));
            }
        }

        var now = NowMs();
        long startedSeq = -1;
        foreach (var (seq, idx) in found)
        {
            var facts = await FactsAsync(seq, cancellationToken).ConfigureAwait(false);
            var reply = new LeaseReply { HasTask = true, LeaseMs = (long)lease.TotalMilliseconds, JobId = facts.Id };
            var take = Command("""
                UPDATE tasks SET state=1, attempts=attempts+1, lease=lease+1, agent=$a, lease_expiry=$e, started_ms=$t, exit_code=NULL, completed_ms=NULL,
                  message=NULL
                WHERE job_seq=$j AND idx=$i RETURNING id, lease, attempts, spec
                """, ("$a", agent), ("$e", now + (long)lease.TotalMilliseconds), ("$t", now), ("$j", seq), ("$i", idx));
            using (var reader = await take.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                reply.TaskId = reader.GetString(0);
                reply.Lease = reader.GetInt64(1);
                reply.Attempt = reader.GetInt32(2);
                var spec = Protocol.TaskSpec.Parser.ParseFrom((byte[])reader.GetValue(3));
                reply.Commands.Add(spec.Commands);
                reply.Outputs.Add(spec.Outputs);
                reply.TimeoutMs = spec.TimeoutMs;
            }

            reply.Environment.Add(facts.Environment);
            if (seq != startedSeq)
            {
                // Written once: rewriting the same value would still dirty the job's page at every lease.
                await ExecuteAsync("UPDATE jobs SET started_ms=$t WHERE seq=$j AND started_ms IS NULL", cancellationToken, ("$t", now), ("$j", seq))
                    .ConfigureAwait(false);
                startedSeq = seq;
            }

            if (facts.HasFiles || facts.HasDeps)
            {
                await AddFilesAsync(reply, seq, idx, facts.HasDeps, cancellationToken).ConfigureAwait(false);
            }

            leased.Add(new Leased(reply, seq, idx));
        }
    }

    private async Task AddFilesAsync(LeaseReply reply, long seq, int idx, bool hasDeps, CancellationToken cancellationToken)
    {
        // The job's staged files, then what the tasks this one depends on (directly or not) produced, latest last, then their
        // declared outputs: the agent lays them out in this order, a later entry for a path winning (tiles for a merge).
        var files = Command("""
            WITH RECURSIVE up(idx) AS (
                SELECT dep_idx FROM deps WHERE job_seq=$j AND task_idx=$i
                UNION SELECT d.dep_idx FROM deps d JOIN up ON d.task_idx=up.idx WHERE d.job_seq=$j)
            SELECT path, hash, size, 0 AS kind, 0 AS modified FROM job_files WHERE job_seq=$j
            UNION ALL
            SELECT path, hash, size, 1, modified_us FROM produced WHERE job_seq=$j AND task_idx IN (SELECT idx FROM up)
            UNION ALL
            SELECT path, hash, size, 2, 0 FROM outputs WHERE job_seq=$j AND task_idx IN (SELECT idx FROM up)
            ORDER BY kind, modified
            """, ("$j", seq), ("$i", idx));
        using (var reader = await files.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                reply.Files.Add(new FileEntry { RelativePath = reader.GetString(0), Hash = reader.GetString(1), Size = reader.GetInt64(2) });
            }
        }

        reply.CollectProduced = hasDeps && Convert.ToInt64(await ScalarAsync("SELECT EXISTS(SELECT 1 FROM deps WHERE job_seq=$j AND dep_idx=$i)",
            cancellationToken, ("$j", seq), ("$i", idx)).ConfigureAwait(false), CultureInfo.InvariantCulture) != 0;
    }

    /// <summary>Takes back a lease whose reply never reached the agent (the call was cancelled): not counted as an attempt.</summary>
    /// <param name="jobSeq">The job.</param>
    /// <param name="taskIndex">The task.</param>
    /// <param name="lease">The lease number.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task.</returns>
    public Task UnleaseAsync(long jobSeq, int taskIndex, long lease, CancellationToken cancellationToken = default) =>
        WithGateAsync(() => ExecuteAsync("""
            UPDATE tasks SET state=0, attempts=max(attempts-1, 0), agent=NULL, lease_expiry=NULL, started_ms=NULL
            WHERE job_seq=$j AND idx=$i AND lease=$l AND state=1
            """, cancellationToken, ("$j", jobSeq), ("$i", taskIndex), ("$l", lease)), cancellationToken);

    /// <summary>Renews the leases an agent still holds; returns those it must stop (stopped, superseded or unknown).</summary>
    /// <param name="agent">The agent.</param>
    /// <param name="held">The tasks it runs.</param>
    /// <param name="lease">The lease length.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The tasks to cancel.</returns>
    public Task<List<HeldTask>> HeartbeatAsync(string agent, IReadOnlyList<HeldTask> held, TimeSpan lease, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var cancel = new List<HeldTask>();
            if (held.Count == 0)
            {
                return cancel;
            }

            var expiry = NowMs() + (long)lease.TotalMilliseconds;
            using var transaction = Begin();
            var renew = Command("""
                UPDATE tasks SET lease_expiry=$e WHERE state=1 AND lease=$l AND agent=$a
                  AND job_seq=(SELECT seq FROM jobs WHERE id=$j) AND id=$t
                """, ("$e", expiry), ("$l", 0L), ("$a", agent), ("$j", ""), ("$t", ""));
            foreach (var task in held)
            {
                renew.Parameters["$l"].Value = task.Lease;
                renew.Parameters["$j"].Value = task.JobId;
                renew.Parameters["$t"].Value = task.TaskId;
                if (await renew.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
                {
                    cancel.Add(task);
                }
            }

            transaction.Commit();
            return cancel;
        }, cancellationToken);

    /// <summary>Whether a lease is the current one of a running task (log lines of superseded attempts are dropped).</summary>
    /// <param name="jobId">The job.</param>
    /// <param name="taskId">The task.</param>
    /// <param name="lease">The lease number.</param>
    /// <param name="agent">The agent that reports: it must be the one holding the lease.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job's sequence number and the task's index, or null.</returns>
    public Task<(long Seq, int Index)?> FindCurrentLeaseAsync(string jobId, string taskId, long lease, string agent, CancellationToken cancellationToken = default) =>
        WithGateAsync<(long, int)?>(async () =>
        {
            var command = Command("""
                SELECT t.job_seq, t.idx FROM tasks t JOIN jobs j ON j.seq=t.job_seq WHERE j.id=$j AND t.id=$t AND t.lease=$l AND t.state=1 AND t.agent=$a
                """, ("$j", jobId), ("$t", taskId), ("$l", lease), ("$a", agent));
            using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? (reader.GetInt64(0), reader.GetInt32(1)) : null;
        }, cancellationToken);

    /// <summary>The outcome of a completion report.</summary>
    /// <param name="Accepted">Whether it was the current attempt.</param>
    /// <param name="JobSeq">The job's sequence number.</param>
    /// <param name="TaskIndex">The task's index.</param>
    /// <param name="NewState">The task's state after the report.</param>
    /// <param name="Next">The agent's next task, when it asked for one and one was runnable.</param>
    public sealed record Report(bool Accepted, long JobSeq, int TaskIndex, int NewState, Leased? Next = null);

    /// <summary>Records an agent's report about an attempt; a report about a superseded attempt is rejected.</summary>
    /// <param name="request">The report.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The outcome.</returns>
    /// <param name="beforeChange">Called with the job's sequence number and the task's index once the report is known to be current,
    /// before anything changes (the log lines go in first, so a reader who sees the job finished has its whole log).</param>
    /// <param name="next">Leases the agent its next task in the same transaction (one commit per task instead of two).</param>
    public Task<Report> CompleteAsync(CompleteRequest request, Func<long, int, Task>? beforeChange = null, LeaseAsk? next = null,
        CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            using var transaction = Begin();
            var now = NowMs();
            var report = await CompleteCoreAsync(request, beforeChange, now, cancellationToken).ConfigureAwait(false);
            if (!report.Accepted)
            {
                return report;
            }

            await MarkTerminalAsync(report.JobSeq, now, cancellationToken).ConfigureAwait(false);
            var leased = next is null ? null : await LeaseCoreAsync(next, cancellationToken).ConfigureAwait(false);
            transaction.Commit();
            return report with { Next = leased };
        }, cancellationToken);

    /// <summary>Records several reports and leases up to <paramref name="maxTasks"/> tasks, in one gate and one transaction.</summary>
    /// <param name="requests">The reports, each checked against its own lease.</param>
    /// <param name="beforeChange">As for <see cref="CompleteAsync"/>, with the report it is called for.</param>
    /// <param name="next">Who asks for tasks, or null.</param>
    /// <param name="maxTasks">How many tasks to lease at most.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>One outcome per report, in order, and the tasks leased.</returns>
    public Task<(List<Report> Reports, List<Leased> Leased)> ReportAsync(IReadOnlyList<CompleteRequest> requests,
        Func<CompleteRequest, long, int, Task>? beforeChange, LeaseAsk? next, int maxTasks, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var reports = new List<Report>(requests.Count);
            var leased = new List<Leased>();
            using var transaction = Begin();
            var now = NowMs();
            long lastSeq = -1;
            foreach (var request in requests)
            {
                var report = await CompleteCoreAsync(request, beforeChange is null ? null : (seq, idx) => beforeChange(request, seq, idx), now,
                    cancellationToken).ConfigureAwait(false);
                reports.Add(report);
                if (report.Accepted && report.JobSeq != lastSeq)
                {
                    // Reports of a batch are mostly of one job: its end is looked for once per run of them (and once more below).
                    if (lastSeq >= 0)
                    {
                        await MarkTerminalAsync(lastSeq, now, cancellationToken).ConfigureAwait(false);
                    }

                    lastSeq = report.JobSeq;
                }
            }

            if (lastSeq >= 0)
            {
                await MarkTerminalAsync(lastSeq, now, cancellationToken).ConfigureAwait(false);
            }

            if (next is not null)
            {
                await LeaseCoreAsync(next, maxTasks, leased, cancellationToken).ConfigureAwait(false);
            }

            transaction.Commit();
            return (reports, leased);
        }, cancellationToken);

    /// <summary>Checks a report against the current lease and applies it, within the caller's gate and transaction.</summary>
    private async Task<Report> CompleteCoreAsync(CompleteRequest request, Func<long, int, Task>? beforeChange, long now, CancellationToken cancellationToken)
    {
        long seq;
        int idx;
        int attempts;
        int maxAttempts;
        var find = Command("""
            SELECT t.job_seq, t.idx, t.attempts, j.max_attempts FROM tasks t JOIN jobs j ON j.seq=t.job_seq
            WHERE j.id=$j AND t.id=$t AND t.lease=$l AND t.state=1 AND t.agent=$a
            """, ("$j", request.JobId), ("$t", request.TaskId), ("$l", request.Lease), ("$a", request.Agent));
        using (var reader = await find.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                return new Report(false, 0, 0, -1);
            }

            seq = reader.GetInt64(0);
            idx = reader.GetInt32(1);
            attempts = reader.GetInt32(2);
            maxAttempts = reader.GetInt32(3);
        }

        if (beforeChange is not null)
        {
            await beforeChange(seq, idx).ConfigureAwait(false);
        }

        int newState;
        if (request.Outcome == 0)
        {
            newState = Done;
            await ExecuteAsync("""
                UPDATE tasks SET state=2, exit_code=$x, completed_ms=$t, lease_expiry=NULL, message=NULL WHERE job_seq=$j AND idx=$i
                """, cancellationToken, ("$x", request.ExitCode), ("$t", now), ("$j", seq), ("$i", idx)).ConfigureAwait(false);
            // A task that ran again (restarted by name) replaces what its earlier run left. Only tasks others depend on produce files.
            var hasDeps = (await FactsAsync(seq, cancellationToken).ConfigureAwait(false)).HasDeps;
            // A task's declared outputs are the same paths at every run (its spec does not change), so one without any has no rows to replace.
            if (request.Outputs.Count > 0)
            {
                await ExecuteAsync("DELETE FROM outputs WHERE job_seq=$j AND task_idx=$i", cancellationToken, ("$j", seq), ("$i", idx)).ConfigureAwait(false);
            }

            if (hasDeps)
            {
                await ExecuteAsync("DELETE FROM produced WHERE job_seq=$j AND task_idx=$i", cancellationToken, ("$j", seq), ("$i", idx)).ConfigureAwait(false);
            }

            foreach (var output in request.Outputs)
            {
                await ExecuteAsync("INSERT OR REPLACE INTO outputs(job_seq, task_idx, path, hash, size) VALUES($j, $i, $p, $h, $s)", cancellationToken,
                    ("$j", seq), ("$i", idx), ("$p", Normalize(output.RelativePath)), ("$h", output.Hash), ("$s", output.Size)).ConfigureAwait(false);
            }

            foreach (var file in request.Produced)
            {
                await ExecuteAsync("""
                    INSERT OR REPLACE INTO produced(job_seq, task_idx, path, hash, size, modified_us) VALUES($j, $i, $p, $h, $s, $m)
                    """, cancellationToken, ("$j", seq), ("$i", idx), ("$p", Normalize(file.RelativePath)), ("$h", file.Hash), ("$s", file.Size),
                    ("$m", file.ModifiedUs)).ConfigureAwait(false);
            }

            await ExecuteAsync("INSERT INTO completions(job_seq, task_idx, lease, agent, at_ms) VALUES($j, $i, $l, $a, $t)", cancellationToken,
                ("$j", seq), ("$i", idx), ("$l", request.Lease), ("$a", request.Agent), ("$t", now)).ConfigureAwait(false);
            if (hasDeps)
            {
                await ExecuteAsync("""
                    UPDATE tasks SET pending=pending-1 WHERE job_seq=$j AND idx IN (SELECT task_idx FROM deps WHERE job_seq=$j AND dep_idx=$i)
                    """, cancellationToken, ("$j", seq), ("$i", idx)).ConfigureAwait(false);
            }
        }
        else if (request.Outcome == 2)
        {
            // Handed back by a draining agent: not an attempt.
            newState = Queued;
            await ExecuteAsync("""
                UPDATE tasks SET state=0, attempts=max(attempts-1, 0), lease_expiry=NULL, message='interrupted: handed back by a stopping agent'
                WHERE job_seq=$j AND idx=$i
                """, cancellationToken, ("$j", seq), ("$i", idx)).ConfigureAwait(false);
        }
        else
        {
            await ExecuteAsync("""
                INSERT INTO failures(job_seq, agent, n) VALUES($j, $a, 1) ON CONFLICT(job_seq, agent) DO UPDATE SET n=n+1
                """, cancellationToken, ("$j", seq), ("$a", request.Agent)).ConfigureAwait(false);
            newState = attempts >= maxAttempts ? Failed : Queued;
            await ExecuteAsync("""
                UPDATE tasks SET state=$s, exit_code=$x, completed_ms=$t, lease_expiry=NULL, message=$m WHERE job_seq=$j AND idx=$i
                """, cancellationToken, ("$s", newState), ("$x", request.ExitCode), ("$t", newState == Failed ? now : null), ("$m", request.Message),
                ("$j", seq), ("$i", idx)).ConfigureAwait(false);
            if (newState == Failed)
            {
                await FailDependentsAsync(seq, idx, cancellationToken).ConfigureAwait(false);
            }
        }

        return new Report(true, seq, idx, newState);
    }

    /// <summary>A task whose lease lapsed, and what became of it.</summary>
    /// <param name="JobId">The job id.</param>
    /// <param name="TaskId">The task id.</param>
    /// <param name="Agent">The agent that held it.</param>
    /// <param name="NewState">Queued again, or failed when out of attempts.</param>
    /// <param name="JobSeq">The job's sequence number.</param>
    /// <param name="TaskIndex">The task's index.</param>
    public sealed record Lapsed(string JobId, string TaskId, string Agent, int NewState, long JobSeq, int TaskIndex);

    /// <summary>Requeues (or fails, when out of attempts) running tasks whose lease lapsed.</summary>
    /// <param name="beforeCommit">Called for each task before the change is committed (the log line goes in first, so a reader
    /// who sees the job finished has its whole log).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The tasks affected.</returns>
    public Task<List<Lapsed>> ReapLapsedAsync(Func<Lapsed, Task>? beforeCommit = null, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var now = NowMs();
            var lapsed = new List<(long Seq, int Idx, string JobId, string TaskId, string Agent, int Attempts, int Max)>();
            var find = Command("""
                SELECT t.job_seq, t.idx, j.id, t.id, coalesce(t.agent, ''), t.attempts, j.max_attempts FROM tasks t INDEXED BY ix_tasks_lease
                JOIN jobs j ON j.seq=t.job_seq WHERE t.state=1 AND t.lease_expiry<$n
                """, ("$n", now));
            using (var reader = await find.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    lapsed.Add((reader.GetInt64(0), reader.GetInt32(1), reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetInt32(5), reader.GetInt32(6)));
                }
            }

            var result = new List<Lapsed>();
            if (lapsed.Count == 0)
            {
                return result;
            }

            using var transaction = Begin();
            foreach (var task in lapsed)
            {
                var newState = task.Attempts >= task.Max ? Failed : Queued;
                await ExecuteAsync("""
                    UPDATE tasks SET state=$s, lease_expiry=NULL, completed_ms=$t, message=$m WHERE job_seq=$j AND idx=$i AND state=1
                    """, cancellationToken, ("$s", newState), ("$t", newState == Failed ? now : null),
                    ("$m", $"lease lapsed on agent {task.Agent} (no heartbeat)"), ("$j", task.Seq), ("$i", task.Idx)).ConfigureAwait(false);
                if (newState == Failed)
                {
                    await FailDependentsAsync(task.Seq, task.Idx, cancellationToken).ConfigureAwait(false);
                }

                await MarkTerminalAsync(task.Seq, now, cancellationToken).ConfigureAwait(false);
                var item = new Lapsed(task.JobId, task.TaskId, task.Agent, newState, task.Seq, task.Idx);
                if (beforeCommit is not null)
                {
                    await beforeCommit(item).ConfigureAwait(false);
                }

                result.Add(item);
            }

            transaction.Commit();
            return result;
        }, cancellationToken);

    /// <summary>Gives every running task a fresh lease: called when the server starts, so agents that stayed alive report in.</summary>
    /// <param name="grace">The grace period.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>How many running tasks there were.</returns>
    public Task<int> GrantRestartGraceAsync(TimeSpan grace, CancellationToken cancellationToken = default) =>
        WithGateAsync(() => ExecuteAsync("UPDATE tasks SET lease_expiry=$e WHERE state=1", cancellationToken,
            ("$e", NowMs() + (long)grace.TotalMilliseconds)), cancellationToken);

    /// <summary>Makes every running lease last at least <paramref name="grace"/> from now: after the server itself stalled
    /// (a pause, a saturated machine), agents whose heartbeats it could not process are not blamed for it.</summary>
    /// <param name="grace">The shortest remaining lease.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>How many leases were extended.</returns>
    public Task<int> ExtendRunningLeasesAsync(TimeSpan grace, CancellationToken cancellationToken = default) =>
        WithGateAsync(() => ExecuteAsync("UPDATE tasks SET lease_expiry=$e WHERE state=1 AND lease_expiry<$e", cancellationToken,
            ("$e", NowMs() + (long)grace.TotalMilliseconds)), cancellationToken);

    /// <summary>Which of <paramref name="hashes"/> no job, output or staged file refers to any more.</summary>
    /// <param name="hashes">Candidate blobs.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The unreferenced ones.</returns>
    public Task<List<string>> FindUnreferencedAsync(IReadOnlyCollection<string> hashes, CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var unreferenced = new List<string>();
            var command = Command("""
                SELECT EXISTS(SELECT 1 FROM job_files WHERE hash=$h) OR EXISTS(SELECT 1 FROM outputs WHERE hash=$h) OR EXISTS(SELECT 1 FROM staged WHERE hash=$h)
                    OR EXISTS(SELECT 1 FROM produced WHERE hash=$h)
                """, ("$h", ""));
            foreach (var hash in hashes)
            {
                command.Parameters["$h"].Value = hash;
                if (Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture) == 0)
                {
                    unreferenced.Add(hash);
                }
            }

            return unreferenced;
        }, cancellationToken);

    /// <summary>Every blob some job, output or staged file refers to.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The hashes.</returns>
    public Task<HashSet<string>> ReferencedBlobsAsync(CancellationToken cancellationToken = default) =>
        WithGateAsync(async () =>
        {
            var referenced = new HashSet<string>(StringComparer.Ordinal);
            var command = Command("SELECT hash FROM job_files UNION SELECT hash FROM outputs UNION SELECT hash FROM staged UNION SELECT hash FROM produced");
            using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                referenced.Add(reader.GetString(0));
            }

            return referenced;
        }, cancellationToken);

    private async Task FailDependentsAsync(long seq, int idx, CancellationToken cancellationToken)
    {
        // Tasks that wait on a failed task can never run: they fail too, naming the cause.
        var frontier = new Queue<int>([idx]);
        while (frontier.Count > 0)
        {
            var current = frontier.Dequeue();
            var dependents = new List<int>();
            var command = Command("""
                SELECT t.idx FROM deps d JOIN tasks t ON t.job_seq=d.job_seq AND t.idx=d.task_idx WHERE d.job_seq=$j AND d.dep_idx=$i AND t.state=0
                """, ("$j", seq), ("$i", current));
            using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    dependents.Add(reader.GetInt32(0));
                }
            }

            foreach (var dependent in dependents)
            {
                await ExecuteAsync("""
                    UPDATE tasks SET state=4, completed_ms=$t, message='a task it depends on failed' WHERE job_seq=$j AND idx=$i
                    """, cancellationToken, ("$t", NowMs()), ("$j", seq), ("$i", dependent)).ConfigureAwait(false);
                frontier.Enqueue(dependent);
            }
        }
    }

    private async Task MarkTerminalAsync(long seq, long now, CancellationToken cancellationToken)
    {
        await ExecuteAsync("""
            UPDATE jobs SET completed_ms=$t WHERE seq=$j AND completed_ms IS NULL
              AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_seq=$j AND state IN (0, 1))
            """, cancellationToken, ("$t", now), ("$j", seq)).ConfigureAwait(false);
    }

    // ---------------------------------------------------------------- plumbing

    private SqliteTransaction? _transaction;

    private Transaction Begin()
    {
        _transaction = _connection.BeginTransaction();
        return new Transaction(this);
    }

    private sealed class Transaction(Store store) : IDisposable
    {
        public void Commit()
        {
            store._transaction?.Commit();
            Dispose();
        }

        public void Rollback()
        {
            store._transaction?.Rollback();
            Dispose();
        }

        public void Dispose()
        {
            store._transaction?.Dispose();
            store._transaction = null;
        }
    }

    private long NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private readonly Dictionary<string, SqliteCommand> _commands = new(StringComparer.Ordinal);

    private SqliteCommand Command(string sql, params (string Name, object? Value)[] parameters)
    {
        // One command per statement text, kept (every call holds the gate): SQLite parses and plans each statement once, not
        // once per call. Callers never dispose them; a reader must be disposed before its command runs again.
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = _connection.CreateCommand();
            command.CommandText = sql;
            _commands[sql] = command;
        }

        command.Transaction = _transaction;
        command.Parameters.Clear();
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }

    private async Task<int> ExecuteAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        var command = Command(sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<object?> ScalarAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        var command = Command(sql, parameters);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<T> WithGateAsync<T>(Func<Task<T>> action, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await action().ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Closes the database.</summary>
    /// <returns>A task.</returns>
    public async ValueTask DisposeAsync()
    {
        foreach (var command in _commands.Values)
        {
            await command.DisposeAsync().ConfigureAwait(false);
        }

        _commands.Clear();
        await _connection.DisposeAsync().ConfigureAwait(false);
        _gate.Dispose();
    }
}
