using System.Globalization;
using System.Text.Json;
using FarmApi;
using Microsoft.Data.Sqlite;

namespace FarmPlugins.LocalQueue;

/// <summary>A task an agent has claimed: what to run and the attempt that fences its reports.</summary>
internal sealed record ClaimedTask(long JobSeq, int Index, string JobId, string Folder, TaskSpec Spec, int Attempt,
    IReadOnlyDictionary<string, string> Environment, bool HasDependencies = true);

/// <summary>
/// An attempt's end as an agent reports it: its exit code, when it started (Unix milliseconds) and, for a short attempt
/// whose log never became a file, the log's lines to keep in the queue with the report.
/// </summary>
internal sealed record TaskReport(ClaimedTask Task, int ExitCode, long StartedAt, string? Log = null);

/// <summary>
/// The durable queue: jobs, tasks and agents in one SQLite database (WAL). Every change is one IMMEDIATE transaction,
/// so several agents and hosts share it safely; an agent's report is applied only while it still holds the lease of
/// the attempt it reports (fencing).
/// </summary>
internal sealed class QueueStore
{
    private const int Waiting = (int)JobState.Waiting;
    private const int Running = (int)JobState.Running;
    private const int Completed = (int)JobState.Completed;
    private const int Cancelled = (int)JobState.Cancelled;
    private const int Failed = (int)JobState.Failed;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly string _connectionString;
    private readonly TimeProvider _clock;
    private readonly string _pragmas;
    private readonly SqliteConnection? _kept;
    private readonly Dictionary<string, SqliteCommand> _statements = new(StringComparer.Ordinal);
    private long _lastLapseCheck = long.MinValue / 2;
    private readonly Dictionary<(long Seq, long SubmittedAt), (bool HasDependencies, IReadOnlyDictionary<string, string> Environment)> _jobFacts = [];

    /// <param name="databasePath">The database file.</param>
    /// <param name="clock">The clock.</param>
    /// <param name="busyTimeout">How long a change waits for the write lock.</param>
    /// <param name="keepConnection">
    /// One connection kept open and shared under a lock (an agent: one task at a time plus its heartbeat) instead of a
    /// pooled connection and its pragmas per call.
    /// </param>
    public QueueStore(string databasePath, TimeProvider clock, TimeSpan? busyTimeout = null, bool keepConnection = false)
    {
        DatabasePath = databasePath;
        _clock = clock;
        var busy = (long)(busyTimeout ?? TimeSpan.FromSeconds(15)).TotalMilliseconds;
        _pragmas = string.Create(CultureInfo.InvariantCulture, $"PRAGMA busy_timeout={busy}; PRAGMA synchronous=NORMAL;");
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = databasePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            // Microsoft.Data.Sqlite retries SQLITE_BUSY itself until the command timeout: the same bound as busy_timeout.
            DefaultTimeout = (int)Math.Max(1, Math.Ceiling((busyTimeout ?? TimeSpan.FromSeconds(15)).TotalSeconds)),
        }.ToString();
        _kept = keepConnection ? new SqliteConnection(_connectionString) : null;
    }

    public string DatabasePath { get; }

    public static string JobId(long seq) => "lq-" + seq.ToString(CultureInfo.InvariantCulture);

    public static long? ParseJobId(string jobId) =>
        jobId.StartsWith("lq-", StringComparison.Ordinal)
        && long.TryParse(jobId.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out var seq) && seq > 0 ? seq : null;

    private long Now => _clock.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Creates the schema; a damaged or locked file becomes a clear error.</summary>
    public void Initialize()
    {
        Run(connection =>
        {
            Execute(connection, "PRAGMA journal_mode=WAL;");
            Execute(connection, """
                CREATE TABLE IF NOT EXISTS jobs(
                  seq INTEGER PRIMARY KEY AUTOINCREMENT,
                  id TEXT NOT NULL UNIQUE,
                  context_id TEXT NOT NULL UNIQUE,
                  name TEXT NOT NULL,
                  state INTEGER NOT NULL,
                  priority INTEGER NOT NULL,
                  max_attempts INTEGER NOT NULL,
                  submitter TEXT,
                  folder TEXT NOT NULL,
                  environment TEXT NOT NULL,
                  labels TEXT NOT NULL,
                  submitted_at INTEGER NOT NULL,
                  started_at INTEGER,
                  completed_at INTEGER);
                CREATE TABLE IF NOT EXISTS tasks(
                  job_seq INTEGER NOT NULL,
                  idx INTEGER NOT NULL,
                  task_id TEXT NOT NULL,
                  spec TEXT NOT NULL,
                  state INTEGER NOT NULL,
                  attempts INTEGER NOT NULL DEFAULT 0,
                  deps_pending INTEGER NOT NULL,
                  lease_owner TEXT,
                  lease_expiry INTEGER,
                  pgid INTEGER,
                  node TEXT,
                  exit_code INTEGER,
                  started_at INTEGER,
                  completed_at INTEGER,
                  log TEXT,
                  PRIMARY KEY(job_seq, idx));
                CREATE INDEX IF NOT EXISTS tasks_ready ON tasks(state, deps_pending);
                -- A job's next runnable task, "any task left?" and counts by state: index lookups, not scans of the job.
                CREATE INDEX IF NOT EXISTS tasks_by_job_state ON tasks(job_seq, state, deps_pending, idx);
                -- The active jobs in claim order, whatever the number of finished jobs kept.
                CREATE INDEX IF NOT EXISTS jobs_active ON jobs(priority DESC, seq) WHERE state IN (0,1);
                CREATE TABLE IF NOT EXISTS deps(job_seq INTEGER NOT NULL, idx INTEGER NOT NULL, dep_idx INTEGER NOT NULL);
                CREATE INDEX IF NOT EXISTS deps_by_dep ON deps(job_seq, dep_idx);
                CREATE TABLE IF NOT EXISTS agents(id TEXT PRIMARY KEY, pid INTEGER NOT NULL, heartbeat INTEGER NOT NULL);
                """);
            // Queues made before short tasks' logs were kept inline get the column (two processes may race to add it).
            if (Scalar(connection, "SELECT 1 FROM pragma_table_info('tasks') WHERE name='log'") is null)
            {
                try
                {
                    Execute(connection, "ALTER TABLE tasks ADD COLUMN log TEXT");
                }
                catch (SqliteException ex) when (ex.Message.Contains("duplicate column", StringComparison.OrdinalIgnoreCase))
                {
                }
            }

            return 0;
        });
    }

    /// <summary>Stores a validated request; returns the existing job's id when its render context was submitted before.</summary>
    public (string JobId, bool Created) Submit(JobRequest request, string folder, string submitter)
    {
        return Run(connection =>
        {
            using var transaction = Begin(connection);
            var existing = Scalar(connection, "SELECT id FROM jobs WHERE context_id=$c", ("$c", request.Context.Id.ToString()));
            if (existing is string id)
            {
                transaction.Commit();
                return (id, false);
            }

            var seq = Convert.ToInt64(Scalar(connection, "SELECT ifnull(max(seq),0)+1 FROM jobs")!, CultureInfo.InvariantCulture);
            var jobId = JobId(seq);
            Execute(connection, """
                INSERT INTO jobs(seq,id,context_id,name,state,priority,max_attempts,submitter,folder,environment,labels,submitted_at)
                VALUES($seq,$id,$c,$name,0,$p,$m,$s,$f,$e,$l,$now)
                """,
                ("$seq", seq), ("$id", jobId), ("$c", request.Context.Id.ToString()), ("$name", request.Name), ("$p", request.Priority),
                ("$m", request.MaxAttempts), ("$s", submitter), ("$f", folder),
                ("$e", JsonSerializer.Serialize(request.Environment, Json)), ("$l", JsonSerializer.Serialize(request.Labels, Json)), ("$now", Now));
            var index = request.Tasks.Select((t, i) => (t.Id, i)).ToDictionary(p => p.Id, p => p.i, StringComparer.Ordinal);
            using (var insertTask = connection.CreateCommand())
            using (var insertDep = connection.CreateCommand())
            {
                insertTask.CommandText = "INSERT INTO tasks(job_seq,idx,task_id,spec,state,deps_pending) VALUES($seq,$idx,$id,$spec,0,$deps)";
                var pSeq = insertTask.Parameters.Add("$seq", SqliteType.Integer);
                var pIdx = insertTask.Parameters.Add("$idx", SqliteType.Integer);
                var pId = insertTask.Parameters.Add("$id", SqliteType.Text);
                var pSpec = insertTask.Parameters.Add("$spec", SqliteType.Text);
                var pDeps = insertTask.Parameters.Add("$deps", SqliteType.Integer);
                insertDep.CommandText = "INSERT INTO deps(job_seq,idx,dep_idx) VALUES($seq,$idx,$dep)";
                var dSeq = insertDep.Parameters.Add("$seq", SqliteType.Integer);
                var dIdx = insertDep.Parameters.Add("$idx", SqliteType.Integer);
                var dDep = insertDep.Parameters.Add("$dep", SqliteType.Integer);
                for (var i = 0; i < request.Tasks.Count; i++)
                {
                    var task = request.Tasks[i];
                    var deps = (task.DependsOn ?? []).Distinct(StringComparer.Ordinal).ToList();
                    pSeq.Value = seq;
                    pIdx.Value = i;
                    pId.Value = task.Id;
                    pSpec.Value = JsonSerializer.Serialize(task, Json);
                    pDeps.Value = deps.Count;
                    insertTask.ExecuteNonQuery();
                    foreach (var dep in deps)
                    {
                        dSeq.Value = seq;
                        dIdx.Value = i;
                        dDep.Value = index[dep];
                        insertDep.ExecuteNonQuery();
                    }
                }
            }

            transaction.Commit();
            return (jobId, true);
        });
    }

    /// <summary>Claims the next runnable task for <paramref name="agentId"/>: priority, then submission, then task order.</summary>
    public ClaimedTask? Claim(string agentId, string node, TimeSpan lease)
    {
        return Run(connection => InTransaction(connection, () => ClaimCore(connection, agentId, node, lease, 1))).FirstOrDefault();
    }

    /// <summary>
    /// Reports the ends of attempts and claims the agent's next tasks in one transaction (one commit for a batch of short
    /// tasks: the queue's write lock is what agents contend for). A report is ignored when its attempt was superseded.
    /// Up to <paramref name="claim"/> tasks of one job are claimed at once; with more than one, their start times stay
    /// empty until each one's report (or its process group's record) says when it started.
    /// </summary>
    public IReadOnlyList<ClaimedTask> ReportAndClaim(IReadOnlyList<TaskReport> reports, string agentId, string node, TimeSpan lease, int claim)
    {
        return Run(connection => InTransaction(connection, () =>
        {
            ReportAll(connection, reports, agentId);
            return claim > 0 ? ClaimCore(connection, agentId, node, lease, claim) : [];
        }));
    }

    /// <summary>Reports attempts' ends in one transaction (ignored when superseded).</summary>
    public void Report(IReadOnlyList<TaskReport> reports, string agentId)
    {
        if (reports.Count > 0)
        {
            Run(connection => InTransaction(connection, () =>
            {
                ReportAll(connection, reports, agentId);
                return 0;
            }));
        }
    }

    private void ReportAll(SqliteConnection connection, IReadOnlyList<TaskReport> reports, string agentId)
    {
        // Successes first and the "was it the job's last task?" question once per job, not once per task.
        var finishedJobs = new HashSet<long>();
        foreach (var report in reports)
        {
            if (ReportCore(connection, report.Task, agentId, report.ExitCode, 1, report.StartedAt, checkJob: false, report.Log))
            {
                finishedJobs.Add(report.Task.JobSeq);
            }
        }

        foreach (var seq in finishedJobs)
        {
            if (Scalar(connection, "SELECT 1 FROM tasks WHERE job_seq=$s AND state IN (0,1) LIMIT 1", ("$s", seq)) is null)
            {
                UpdateJobState(connection, seq);
            }
        }
    }

    /// <summary>Gives back claimed tasks that were never started (an agent told to stop): no attempt is counted.</summary>
    public void Release(IReadOnlyList<ClaimedTask> tasks, string agentId)
    {
        if (tasks.Count == 0)
        {
            return;
        }

        Run(connection => InTransaction(connection, () =>
        {
            foreach (var task in tasks)
            {
                Execute(connection, """
                    UPDATE tasks SET state=0, attempts=attempts-1, lease_owner=NULL, lease_expiry=NULL, started_at=NULL
                    WHERE job_seq=$s AND idx=$i AND state=1 AND lease_owner=$o AND attempts=$a
                    """, ("$s", task.JobSeq), ("$i", task.Index), ("$o", agentId), ("$a", task.Attempt));
            }

            return 0;
        }));
    }

    /// <summary>Whether a claimed attempt is still this agent's (not stopped, not requeued).</summary>
    public bool StillHeld(ClaimedTask task, string agentId) =>
        Run(connection => Scalar(connection, "SELECT 1 FROM tasks WHERE job_seq=$s AND idx=$i AND state=1 AND lease_owner=$o AND attempts=$a",
            ("$s", task.JobSeq), ("$i", task.Index), ("$o", agentId), ("$a", task.Attempt)) is not null);

    /// <summary>Renews the leases of every task the agent holds (those claimed ahead and those not yet reported).</summary>
    public void RenewAll(string agentId, TimeSpan lease) =>
        Run(connection => Execute(connection, "UPDATE tasks SET lease_expiry=$e WHERE lease_owner=$o AND state=1",
            ("$e", Now + (long)lease.TotalMilliseconds), ("$o", agentId)));

    private List<ClaimedTask> ClaimCore(SqliteConnection connection, string agentId, string node, TimeSpan lease, int count)
    {
        // Lapsed leases are looked for at most every tenth of a lease (and every second): a lease lapses on that scale,
        // and one query fewer per task is what a burst of short tasks notices.
        var checkEvery = Math.Min(1000, (long)lease.TotalMilliseconds / 10);
        if (Now - _lastLapseCheck >= checkEvery)
        {
            RequeueLapsed(connection);
            _lastLapseCheck = Now;
        }

        // Jobs in priority then submission order, then the job's first runnable tasks through tasks_by_job_state: each
        // claim costs a few index lookups, whatever the number of tasks queued (one ORDER BY over every ready task of
        // every job made dispatch quadratic).
        (long Seq, string Id, string Folder, string Environment, int State, long SubmittedAt)? job = null;
        using (var jobs = Prepare(connection, """
                SELECT seq, id, folder, environment, state, submitted_at FROM jobs j INDEXED BY jobs_active WHERE state IN (0,1)
                  AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_seq=j.seq AND t.state=0 AND t.deps_pending=0)
                ORDER BY priority DESC, seq LIMIT 1
                """))
        {
            using var reader = jobs.Command.ExecuteReader();
            if (reader.Read())
            {
                job = (reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetInt32(4), reader.GetInt64(5));
            }
        }

        var claimed = new List<ClaimedTask>(count);
        if (job is not { } found)
        {
            return claimed;
        }

        // The first `count` runnable tasks of the job, claimed and read in one statement. A task claimed ahead (count > 1)
        // has no start time until the agent starts it: a lapsed lease then gives it back without counting an attempt.
        var now = Now;
        using (var update = Prepare(connection, """
                UPDATE tasks SET state=1, attempts=attempts+1, lease_owner=$o, lease_expiry=$e, node=$n, pgid=NULL, exit_code=NULL,
                  started_at=CASE WHEN $k=1 THEN $now ELSE NULL END, completed_at=NULL
                WHERE job_seq=$s AND idx IN (SELECT idx FROM tasks WHERE job_seq=$s AND state=0 AND deps_pending=0 ORDER BY idx LIMIT $k)
                RETURNING idx, spec, attempts
                """))
        {
            var parameters = update.Command.Parameters;
            parameters.AddWithValue("$o", agentId);
            parameters.AddWithValue("$e", now + (long)lease.TotalMilliseconds);
            parameters.AddWithValue("$n", node);
            parameters.AddWithValue("$k", count);
            parameters.AddWithValue("$now", now);
            parameters.AddWithValue("$s", found.Seq);
            var facts = JobFacts(connection, found.Seq, found.SubmittedAt, found.Environment);
            using var reader = update.Command.ExecuteReader();
            while (reader.Read())
            {
                claimed.Add(new ClaimedTask(found.Seq, reader.GetInt32(0), found.Id, found.Folder,
                    JsonSerializer.Deserialize<TaskSpec>(reader.GetString(1), Json)!, reader.GetInt32(2), facts.Environment, facts.HasDependencies));
            }
        }

        claimed.Sort((x, y) => x.Index.CompareTo(y.Index));
        // A claimed task can only move its job from Waiting to Running.
        if (claimed.Count > 0 && found.State == Waiting)
        {
            Execute(connection, "UPDATE jobs SET state=1, started_at=ifnull(started_at,$now) WHERE seq=$s AND state=0",
                ("$now", now), ("$s", found.Seq));
        }

        return claimed;
    }

    /// <summary>Records the process group of a running attempt, so a stop from any process can kill it.</summary>
    public bool SetProcessGroup(ClaimedTask task, string agentId, int pgid) =>
        Run(connection => Execute(connection,
            "UPDATE tasks SET pgid=$g, started_at=ifnull(started_at,$now) WHERE job_seq=$s AND idx=$i AND state=1 AND lease_owner=$o AND attempts=$a",
            ("$g", pgid), ("$now", Now), ("$s", task.JobSeq), ("$i", task.Index), ("$o", agentId), ("$a", task.Attempt)) == 1);

    /// <summary>Renews the lease; false when the attempt is no longer this agent's (stopped, requeued).</summary>
    public bool Renew(ClaimedTask task, string agentId, TimeSpan lease) =>
        Run(connection => Execute(connection,
            "UPDATE tasks SET lease_expiry=$e WHERE job_seq=$s AND idx=$i AND state=1 AND lease_owner=$o AND attempts=$a",
            ("$e", Now + (long)lease.TotalMilliseconds), ("$s", task.JobSeq), ("$i", task.Index), ("$o", agentId), ("$a", task.Attempt)) == 1);

    /// <summary>Reports an attempt's end; ignored (false) when the attempt was superseded.</summary>
    public bool Report(ClaimedTask task, string agentId, int exitCode, int maxAttemptsFallback = 1)
    {
        return Run(connection => InTransaction(connection, () => ReportCore(connection, task, agentId, exitCode, maxAttemptsFallback, Now, checkJob: true, log: null)));
    }

    /// <summary>
    /// Applies one report. With <paramref name="checkJob"/> false a success does not look at the job's state: it returns
    /// true for the caller to ask once per job whether that was its last task.
    /// </summary>
    private bool ReportCore(SqliteConnection connection, ClaimedTask task, string agentId, int exitCode, int maxAttemptsFallback, long startedAt,
        bool checkJob, string? log)
    {
        var now = Now;
        if (exitCode == 0)
        {
            // The fencing and the update in one statement: nothing changes unless this attempt still holds the lease.
            if (Execute(connection, """
                UPDATE tasks SET state=2, exit_code=0, completed_at=$now, started_at=ifnull(started_at,$started), lease_owner=NULL, pgid=NULL,
                  log=CASE WHEN $log IS NULL THEN log ELSE ifnull(log,'') || $log END
                WHERE job_seq=$s AND idx=$i AND state=1 AND attempts=$a AND lease_owner=$o
                """, ("$now", now), ("$started", startedAt), ("$log", log), ("$s", task.JobSeq), ("$i", task.Index), ("$a", task.Attempt), ("$o", agentId)) != 1)
            {
                return false;
            }

            if (task.HasDependencies)
            {
                Execute(connection, """
                    UPDATE tasks SET deps_pending=deps_pending-1
                    WHERE job_seq=$s AND idx IN (SELECT idx FROM deps WHERE job_seq=$s AND dep_idx=$i)
                    """, ("$s", task.JobSeq), ("$i", task.Index));
            }

            if (!checkJob)
            {
                return true;
            }

            // A success changes the job's state only when it was the last task left: the common case is one index lookup.
            if (Scalar(connection, "SELECT 1 FROM tasks WHERE job_seq=$s AND state IN (0,1) LIMIT 1", ("$s", task.JobSeq)) is not null)
            {
                return true;
            }
        }
        else
        {
            var owner = Scalar(connection, "SELECT lease_owner FROM tasks WHERE job_seq=$s AND idx=$i AND state=1 AND attempts=$a",
                ("$s", task.JobSeq), ("$i", task.Index), ("$a", task.Attempt));
            if (owner is not string o || o != agentId)
            {
                return false;
            }

            var maxAttempts = Convert.ToInt32(Scalar(connection, "SELECT max_attempts FROM jobs WHERE seq=$s", ("$s", task.JobSeq)) ?? maxAttemptsFallback,
                CultureInfo.InvariantCulture);
            var final = task.Attempt >= maxAttempts;
            Execute(connection, """
                UPDATE tasks SET state=$st, exit_code=$x, completed_at=$now, started_at=ifnull(started_at,$started), lease_owner=NULL, pgid=NULL,
                  log=CASE WHEN $log IS NULL THEN log ELSE ifnull(log,'') || $log END
                WHERE job_seq=$s AND idx=$i
                """, ("$st", final ? Failed : Waiting), ("$x", exitCode), ("$now", now), ("$started", startedAt), ("$log", log), ("$s", task.JobSeq), ("$i", task.Index));
            if (final)
            {
                FailDependents(connection, task.JobSeq, task.Index);
            }
        }

        UpdateJobState(connection, task.JobSeq);
        return true;
    }

    /// <summary>
    /// What never changes about a job once submitted, read once per job (not per claim): its parsed environment and
    /// whether any of its tasks depends on another (a job without any skips the dependents' update on every success).
    /// Keyed by number and submission time: a job number comes back after the newest job is deleted.
    /// </summary>
    private (bool HasDependencies, IReadOnlyDictionary<string, string> Environment) JobFacts(SqliteConnection connection, long seq, long submittedAt,
        string environmentJson)
    {
        lock (_jobFacts)
        {
            if (_jobFacts.TryGetValue((seq, submittedAt), out var known))
            {
                return known;
            }
        }

        var facts = (Scalar(connection, "SELECT 1 FROM deps WHERE job_seq=$s LIMIT 1", ("$s", seq)) is not null,
            (IReadOnlyDictionary<string, string>)(JsonSerializer.Deserialize<Dictionary<string, string>>(environmentJson, Json) ?? []));
        lock (_jobFacts)
        {
            ForgetJobFactsIfMany();
            _jobFacts[(seq, submittedAt)] = facts;
        }

        return facts;
    }

    private void ForgetJobFactsIfMany()
    {
        if (_jobFacts.Count > 256)
        {
            _jobFacts.Clear();
        }
    }

    /// <summary>Cancels a job: its waiting and running tasks are cancelled; returns the process groups to kill.</summary>
    public IReadOnlyList<int> Stop(long seq)
    {
        return Run(connection =>
        {
            using var transaction = Begin(connection);
            EnsureJob(connection, seq);
            var groups = new List<int>();
            using (var select = connection.CreateCommand())
            {
                select.CommandText = "SELECT pgid FROM tasks WHERE job_seq=$s AND state=1 AND pgid IS NOT NULL";
                select.Parameters.AddWithValue("$s", seq);
                using var reader = select.ExecuteReader();
                while (reader.Read())
                {
                    groups.Add(reader.GetInt32(0));
                }
            }

            var state = Convert.ToInt32(Scalar(connection, "SELECT state FROM jobs WHERE seq=$s", ("$s", seq)), CultureInfo.InvariantCulture);
            if (!((JobState)state).IsTerminal())
            {
                var now = Now;
                Execute(connection, "UPDATE tasks SET state=3, completed_at=$now, lease_owner=NULL WHERE job_seq=$s AND state IN (0,1)",
                    ("$now", now), ("$s", seq));
                Execute(connection, "UPDATE jobs SET state=3, completed_at=$now WHERE seq=$s", ("$now", now), ("$s", seq));
            }

            transaction.Commit();
            return groups;
        });
    }

    /// <summary>Runs failed and cancelled tasks again (or those named); completed ones are kept unless named.</summary>
    public void Restart(long seq, IReadOnlyCollection<string>? taskIds)
    {
        Run(connection =>
        {
            using var transaction = Begin(connection);
            EnsureJob(connection, seq);
            if (taskIds is not null)
            {
                foreach (var taskId in taskIds)
                {
                    if (Scalar(connection, "SELECT 1 FROM tasks WHERE job_seq=$s AND task_id=$t", ("$s", seq), ("$t", taskId)) is null)
                    {
                        throw new ArgumentException($"Job {JobId(seq)} has no task '{taskId}'.", nameof(taskIds));
                    }

                    if (Convert.ToInt32(Scalar(connection, "SELECT state FROM tasks WHERE job_seq=$s AND task_id=$t", ("$s", seq), ("$t", taskId)),
                        CultureInfo.InvariantCulture) == Running)
                    {
                        throw new FarmPluginException($"Task '{taskId}' of job {JobId(seq)} is running; stop the job before restarting it.");
                    }

                    Execute(connection, "UPDATE tasks SET state=0, attempts=0, exit_code=NULL, completed_at=NULL WHERE job_seq=$s AND task_id=$t",
                        ("$s", seq), ("$t", taskId));
                }
            }
            else
            {
                Execute(connection, "UPDATE tasks SET state=0, attempts=0, exit_code=NULL, completed_at=NULL WHERE job_seq=$s AND state IN (3,4)",
                    ("$s", seq));
            }

            Execute(connection, """
                UPDATE tasks SET deps_pending=(SELECT count(*) FROM deps d JOIN tasks t2 ON t2.job_seq=d.job_seq AND t2.idx=d.dep_idx
                  WHERE d.job_seq=tasks.job_seq AND d.idx=tasks.idx AND t2.state<>2)
                WHERE job_seq=$s
                """, ("$s", seq));
            Execute(connection, "UPDATE jobs SET state=0, completed_at=NULL WHERE seq=$s", ("$s", seq));
            UpdateJobState(connection, seq);
            transaction.Commit();
            return 0;
        });
    }

    /// <summary>Removes a terminal job's records; returns its folder.</summary>
    public string Delete(long seq)
    {
        return Run(connection =>
        {
            using var transaction = Begin(connection);
            EnsureJob(connection, seq);
            var state = (JobState)Convert.ToInt32(Scalar(connection, "SELECT state FROM jobs WHERE seq=$s", ("$s", seq)), CultureInfo.InvariantCulture);
            if (!state.IsTerminal())
            {
                throw new FarmPluginException($"Job {JobId(seq)} is {state}; stop it before deleting it.");
            }

            var folder = (string)Scalar(connection, "SELECT folder FROM jobs WHERE seq=$s", ("$s", seq))!;
            Execute(connection, "DELETE FROM deps WHERE job_seq=$s; DELETE FROM tasks WHERE job_seq=$s; DELETE FROM jobs WHERE seq=$s;", ("$s", seq));
            transaction.Commit();
            return folder;
        });
    }

    public Job? GetJob(long seq) => QueryJobs("WHERE j.seq=$s", [("$s", seq)], null).FirstOrDefault();

    public IReadOnlyList<Job> GetJobs(JobQuery query)
    {
        var where = new List<string>();
        var parameters = new List<(string, object)>();
        if (query.State is { } state)
        {
            where.Add("j.state=$state");
            parameters.Add(("$state", (int)state));
        }

        if (query.RenderContextId is { } context)
        {
            where.Add("j.context_id=$c");
            parameters.Add(("$c", context.ToString()));
        }

        if (query.Submitter is { } submitter)
        {
            where.Add("j.submitter=$sub");
            parameters.Add(("$sub", submitter));
        }

        return QueryJobs(where.Count == 0 ? string.Empty : "WHERE " + string.Join(" AND ", where), parameters, query.Limit);
    }

    public string? GetFolder(long seq) => Run(connection => Scalar(connection, "SELECT folder FROM jobs WHERE seq=$s", ("$s", seq)) as string);

    public IReadOnlyList<(TaskInfo Info, TaskSpec Spec)> GetTasks(long seq)
    {
        return Run(connection =>
        {
            EnsureJob(connection, seq);
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT task_id, state, attempts, node, exit_code, started_at, completed_at, spec FROM tasks WHERE job_seq=$s ORDER BY idx";
            command.Parameters.AddWithValue("$s", seq);
            using var reader = command.ExecuteReader();
            var result = new List<(TaskInfo, TaskSpec)>();
            while (reader.Read())
            {
                var spec = JsonSerializer.Deserialize<TaskSpec>(reader.GetString(7), Json)!;
                result.Add((new TaskInfo(reader.GetString(0), (JobState)reader.GetInt32(1), reader.GetInt32(2),
                    reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetInt32(4),
                    Time(reader, 5), Time(reader, 6), spec.Labels), spec));
            }

            return (IReadOnlyList<(TaskInfo, TaskSpec)>)result;
        });
    }

    /// <summary>
    /// The lines kept in the queue for a task whose attempts were short (their logs never became a file), or null. A task's
    /// log file, once there, holds these lines first and is the whole log.
    /// </summary>
    public string? GetInlineLog(long seq, int index) =>
        Run(connection => Scalar(connection, "SELECT log FROM tasks WHERE job_seq=$s AND idx=$i", ("$s", seq), ("$i", index)) as string);

    public void Heartbeat(string agentId, int pid) =>
        Run(connection => Execute(connection, "INSERT INTO agents(id,pid,heartbeat) VALUES($id,$pid,$now) ON CONFLICT(id) DO UPDATE SET heartbeat=$now",
            ("$id", agentId), ("$pid", pid), ("$now", Now)));

    public void RemoveAgent(string agentId) =>
        Run(connection => Execute(connection, "DELETE FROM agents WHERE id=$id", ("$id", agentId)));

    public IReadOnlyList<(string Id, int Pid, DateTimeOffset Heartbeat)> GetAgents()
    {
        return Run(connection =>
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT id, pid, heartbeat FROM agents";
            using var reader = command.ExecuteReader();
            var result = new List<(string, int, DateTimeOffset)>();
            while (reader.Read())
            {
                result.Add((reader.GetString(0), reader.GetInt32(1), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2))));
            }

            return (IReadOnlyList<(string, int, DateTimeOffset)>)result;
        });
    }

    public bool HasRunnableWork() =>
        Run(connection => Scalar(connection, "SELECT 1 FROM tasks t JOIN jobs j ON j.seq=t.job_seq WHERE t.state IN (0,1) AND j.state IN (0,1) LIMIT 1") is not null);

    private IReadOnlyList<Job> QueryJobs(string where, IReadOnlyList<(string, object)> parameters, int? limit)
    {
        return Run(connection =>
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"""
                SELECT j.id, j.name, j.state, j.submitted_at, j.started_at, j.completed_at, j.context_id, j.submitter, j.labels, j.seq,
                  (SELECT count(*) FROM tasks t WHERE t.job_seq=j.seq),
                  (SELECT count(*) FROM tasks t WHERE t.job_seq=j.seq AND t.state=2),
                  (SELECT count(*) FROM tasks t WHERE t.job_seq=j.seq AND t.state=1),
                  (SELECT count(*) FROM tasks t WHERE t.job_seq=j.seq AND t.state=4),
                  j.folder
                FROM jobs j {where} ORDER BY j.seq DESC {(limit is { } l ? "LIMIT " + l.ToString(CultureInfo.InvariantCulture) : string.Empty)}
                """;
            foreach (var (name, value) in parameters)
            {
                command.Parameters.AddWithValue(name, value);
            }

            using var reader = command.ExecuteReader();
            var jobs = new List<Job>();
            while (reader.Read())
            {
                var seq = reader.GetInt64(9);
                jobs.Add(new Job(reader.GetString(0), reader.GetString(1), (JobState)reader.GetInt32(2),
                    new JobProgress(reader.GetInt32(10), reader.GetInt32(11), reader.GetInt32(12), reader.GetInt32(13)),
                    DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)), Time(reader, 4), Time(reader, 5),
                    Guid.Parse(reader.GetString(6)), reader.IsDBNull(7) ? null : reader.GetString(7), null,
                    JsonSerializer.Deserialize<Dictionary<string, string>>(reader.GetString(8), Json),
                    new Dictionary<string, string> { ["folder"] = reader.GetString(14), ["seq"] = seq.ToString(CultureInfo.InvariantCulture) }));
            }

            return (IReadOnlyList<Job>)jobs;
        });
    }

    private void RequeueLapsed(SqliteConnection connection)
    {
        var lapsed = new List<(long Seq, int Idx, int Attempts, int Max, bool Started)>();
        using (var select = Prepare(connection, """
                SELECT t.job_seq, t.idx, t.attempts, j.max_attempts, t.pgid, t.started_at IS NOT NULL FROM tasks t JOIN jobs j ON j.seq=t.job_seq
                WHERE t.state=1 AND t.lease_expiry < $now
                """))
        {
            select.Command.Parameters.AddWithValue("$now", Now);
            using var reader = select.Command.ExecuteReader();
            while (reader.Read())
            {
                lapsed.Add((reader.GetInt64(0), reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3), reader.GetBoolean(5)));
                if (!reader.IsDBNull(4) && reader.GetInt32(4) is > 1 and var pgid)
                {
                    // The agent that ran it is gone, its task may not be: the queue is on this machine, so the
                    // orphaned process group of the lost attempt is killed before the task runs again.
                    NativeMethods.Kill(-pgid, 9);
                }
            }
        }

        foreach (var (seq, idx, attempts, max, started) in lapsed)
        {
            // A task claimed ahead and never started (no start time) goes back without counting an attempt.
            var final = started && attempts >= max;
            Execute(connection, "UPDATE tasks SET state=$st, attempts=attempts-$uncount, lease_owner=NULL, pgid=NULL, completed_at=$now WHERE job_seq=$s AND idx=$i",
                ("$st", final ? Failed : Waiting), ("$uncount", started ? 0 : 1), ("$now", Now), ("$s", seq), ("$i", idx));
            if (final)
            {
                FailDependents(connection, seq, idx);
            }

            UpdateJobState(connection, seq);
        }
    }

    private void FailDependents(SqliteConnection connection, long seq, int idx)
    {
        var pending = new Queue<int>([idx]);
        while (pending.Count > 0)
        {
            var failed = pending.Dequeue();
            var dependents = new List<int>();
            using (var select = connection.CreateCommand())
            {
                select.CommandText = "SELECT d.idx FROM deps d JOIN tasks t ON t.job_seq=d.job_seq AND t.idx=d.idx WHERE d.job_seq=$s AND d.dep_idx=$i AND t.state=0";
                select.Parameters.AddWithValue("$s", seq);
                select.Parameters.AddWithValue("$i", failed);
                using var reader = select.ExecuteReader();
                while (reader.Read())
                {
                    dependents.Add(reader.GetInt32(0));
                }
            }

            foreach (var dependent in dependents)
            {
                Execute(connection, "UPDATE tasks SET state=4, completed_at=$now WHERE job_seq=$s AND idx=$i",
                    ("$now", Now), ("$s", seq), ("$i", dependent));
                pending.Enqueue(dependent);
            }
        }
    }

    private void UpdateJobState(SqliteConnection connection, long seq)
    {
        var counts = new int[5];
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT state, count(*) FROM tasks WHERE job_seq=$s GROUP BY state";
            command.Parameters.AddWithValue("$s", seq);
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                counts[reader.GetInt32(0)] = reader.GetInt32(1);
            }
        }

        var current = Convert.ToInt32(Scalar(connection, "SELECT state FROM jobs WHERE seq=$s", ("$s", seq)), CultureInfo.InvariantCulture);
        if (current == Cancelled)
        {
            return;
        }

        var total = counts.Sum();
        int state;
        if (counts[Waiting] + counts[Running] == 0)
        {
            state = counts[Completed] == total ? Completed : counts[Failed] > 0 ? Failed : Cancelled;
        }
        else
        {
            state = counts[Running] > 0 || counts[Completed] + counts[Failed] > 0 ? Running : Waiting;
        }

        var now = Now;
        Execute(connection, """
            UPDATE jobs SET state=$st,
              started_at=CASE WHEN started_at IS NULL AND $st<>0 THEN $now ELSE started_at END,
              completed_at=CASE WHEN $st IN (2,3,4) THEN ifnull(completed_at,$now) ELSE NULL END
            WHERE seq=$s
            """, ("$st", state), ("$now", now), ("$s", seq));
    }

    private void EnsureJob(SqliteConnection connection, long seq)
    {
        if (Scalar(connection, "SELECT 1 FROM jobs WHERE seq=$s", ("$s", seq)) is null)
        {
            throw new JobNotFoundException(JobId(seq), "LocalQueue");
        }
    }

    private static DateTimeOffset? Time(SqliteDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));

    private static SqliteTransaction Begin(SqliteConnection connection) => connection.BeginTransaction(deferred: false);

    /// <summary>
    /// A statement for <paramref name="sql"/>: on the kept connection a cached command (SQLite prepares it once, not on
    /// every call: preparing was a quarter of an agent's CPU), elsewhere a new one.
    /// </summary>
    private Statement Prepare(SqliteConnection connection, string sql)
    {
        if (!ReferenceEquals(connection, _kept))
        {
            var command = connection.CreateCommand();
            command.CommandText = sql;
            return new Statement(command, cached: false);
        }

        if (!_statements.TryGetValue(sql, out var cached))
        {
            cached = connection.CreateCommand();
            cached.CommandText = sql;
            _statements[sql] = cached;
        }

        cached.Parameters.Clear();
        return new Statement(cached, cached: true);
    }

    /// <summary>
    /// One IMMEDIATE transaction. On the kept connection it is opened and ended with cached statements (the commands
    /// cached there carry no transaction object); elsewhere with a <see cref="SqliteTransaction"/>.
    /// </summary>
    private T InTransaction<T>(SqliteConnection connection, Func<T> body)
    {
        if (!ReferenceEquals(connection, _kept))
        {
            using var transaction = Begin(connection);
            var result = body();
            transaction.Commit();
            return result;
        }

        Execute(connection, "BEGIN IMMEDIATE");
        try
        {
            var result = body();
            Execute(connection, "COMMIT");
            return result;
        }
        catch
        {
            try
            {
                Execute(connection, "ROLLBACK");
            }
            catch (SqliteException)
            {
                // No transaction left to roll back (SQLite ended it itself).
            }

            throw;
        }
    }

    private int Execute(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        using var statement = Prepare(connection, sql);
        foreach (var (name, value) in parameters)
        {
            statement.Command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return statement.Command.ExecuteNonQuery();
    }

    private object? Scalar(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        using var statement = Prepare(connection, sql);
        foreach (var (name, value) in parameters)
        {
            statement.Command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        var result = statement.Command.ExecuteScalar();
        return result is DBNull ? null : result;
    }

    private readonly struct Statement(SqliteCommand command, bool cached) : IDisposable
    {
        public SqliteCommand Command { get; } = command;

        public void Dispose()
        {
            if (!cached)
            {
                Command.Dispose();
            }
        }
    }

    private T Run<T>(Func<SqliteConnection, T> action)
    {
        try
        {
            if (_kept is not null)
            {
                lock (_kept)
                {
                    if (_kept.State != System.Data.ConnectionState.Open)
                    {
                        _kept.Open();
                        Execute(_kept, _pragmas);
                    }

                    return action(_kept);
                }
            }

            using var connection = new SqliteConnection(_connectionString);
            connection.Open();
            Execute(connection, _pragmas);
            return action(connection);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 5 or 6)
        {
            throw new FarmUnavailableException(
                $"The LocalQueue database {DatabasePath} is locked by another process and stayed locked; try again, or find the process holding it.", ex, "LocalQueue");
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode is 11 or 26)
        {
            throw new FarmPluginException(
                $"The LocalQueue database {DatabasePath} is damaged or not a database ({ex.Message}); move it away to start an empty queue.", ex, "LocalQueue");
        }
    }
}
