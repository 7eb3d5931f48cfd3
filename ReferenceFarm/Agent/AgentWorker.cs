using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using FarmApi;
using FarmApi.Hashing;
using FarmApi.Processes;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ReferenceFarm.Protocol;

namespace ReferenceFarm.Agent;

/// <summary>
/// The render node: leases tasks (priority order is the server's business), lays out the job folder from a blob cache
/// shared across jobs, runs the commands, streams their output, uploads declared outputs and reports with the lease
/// number. On SIGTERM it stops leasing, lets running tasks finish within the drain grace, and hands back the rest.
/// </summary>
public sealed class AgentWorker : BackgroundService
{
    private readonly AgentOptions _options;
    private readonly ILogger<AgentWorker> _logger;
    private readonly GrpcChannel _channel;
    private readonly Protocol.Agents.AgentsClient _agents;
    private readonly Blobs.BlobsClient _blobs;
    private readonly Metadata _headers;
    private readonly FileBlobStore _cache;
    private readonly Installation[] _installations;
    private readonly ConcurrentDictionary<(string JobId, string TaskId), Held> _held = new();
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _downloads = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _drainKill = new();
    private readonly CancellationTokenSource _hardStop = new();
    private readonly RunningRecords _records;
    private readonly ConcurrentDictionary<(string JobId, string Path), Known> _known = new();
    private readonly PeriodicTimer _heartbeatTimer;

    // Leasing ahead: while tasks are short, the agent holds a few leased tasks beyond its slots and sends its reports in batches
    // (one call carries several reports and the next leases), so the per-call cost is shared by several tasks.
    private readonly Lock _queueGate = new();
    private readonly Queue<Ahead> _ready = new();
    private List<(CompleteRequest Report, Held? Held)> _pending = [];
    private TaskCompletionSource _pendingSent = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _oldestPendingTicks;
    private Task _lastSend = Task.CompletedTask;
    private TaskCompletionSource _readyChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _reportSignal = new(0);
    private int _running;
    private volatile bool _shortTasks;
    private volatile bool _flushing;

    /// <summary>A task under this long (and succeeding) lets the agent lease ahead: the per-call cost matters only for short tasks.</summary>
    private static readonly TimeSpan ShortTask = TimeSpan.FromMilliseconds(100);

    /// <summary>A task leased ahead that waited this long (its slot is busy with a long task) is handed back for another agent.</summary>
    private static readonly TimeSpan AheadWait = TimeSpan.FromSeconds(1);

    /// <summary>How long a finished task's report may wait for others to share its call.</summary>
    private static readonly TimeSpan ReportDelay = TimeSpan.FromMilliseconds(50);

    /// <summary>A leased task waiting for a slot.</summary>
    private sealed record Ahead(LeaseReply Lease, Held Held, long LeasedAtTicks);

    /// <summary>Makes the worker.</summary>
    /// <param name="options">The options.</param>
    /// <param name="logger">The logger.</param>
    public AgentWorker(AgentOptions options, ILogger<AgentWorker> logger)
    {
        _options = options;
        _logger = logger;
        _channel = FarmChannel.Create(options.Server, options.CaCertificate);
        _agents = new Protocol.Agents.AgentsClient(_channel);
        _blobs = new Blobs.BlobsClient(_channel);
        _headers = FarmChannel.Bearer(options.Token);
        _cache = new FileBlobStore(Path.Combine(options.WorkDirectory, "cache"));
        _installations = DetectInstallations(options);
        _records = new RunningRecords(options.WorkDirectory);
        _heartbeatTimer = new PeriodicTimer(options.Heartbeat);
    }

    private sealed class Held(long lease)
    {
        public long Lease { get; } = lease;

        public CancellationTokenSource Cancel { get; } = new();

        /// <summary>The job folder before the task ran, when its dependents need what it produces.</summary>
        public Dictionary<string, (long Size, DateTime Modified)>? Before { get; set; }

        /// <summary>Set (under the Held's lock) when the task ended: the log flusher leaves it alone from then on.</summary>
        public bool Ended { get; set; }

        /// <summary>The log flusher's call in flight for this task, if any: the report waits for it, so lines stay in order.</summary>
        public Task Flushing { get; set; } = Task.CompletedTask;
    }

    /// <summary>A file of a job folder whose content this agent knows: laid out from the cache, or produced and hashed here.</summary>
    private sealed record Known(string Hash, long Size, DateTime Modified);

    /// <summary>The hosts this node advertises, with where each one's executable is.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The installations.</returns>
    public static Installation[] DetectInstallations(AgentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var wanted = options.Hosts.Count > 0 ? options.Hosts : ["command", FarmTools.HostName, "povray", "blender"];
        var result = new List<Installation>();
        foreach (var host in wanted.Distinct(StringComparer.Ordinal))
        {
            string? executable = options.HostPaths.GetValueOrDefault(host);
            if (executable is null)
            {
                executable = host switch
                {
                    "command" => string.Empty,
                    FarmTools.HostName => FarmTools.Locate(null, typeof(AgentWorker).Assembly.Location),
                    _ => ExecutableLookup.FindOnPath(host, Environment.GetEnvironmentVariable("PATH")),
                };
            }

            // A host asked for explicitly is advertised even when not found, so its tasks fail visibly here rather than wait forever.
            if (executable is null && options.Hosts.Count == 0)
            {
                continue;
            }

            result.Add(new Installation
            {
                Host = host, Executable = executable ?? host, Version = executable is null ? string.Empty : DetectVersion(host, executable),
                Platform = System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier, Known = true,
            });
        }

        return [.. result];
    }

    /// <summary>The version a renderer reports (<c>POV-Ray 3.7.0.10</c>, <c>Blender 3.4.1</c>), or empty; asked once, at start.</summary>
    private static string DetectVersion(string host, string executable)
    {
        if (host is not ("povray" or "blender") || !File.Exists(executable))
        {
            return string.Empty;
        }

        try
        {
            var info = new ProcessStartInfo(executable, ["--version"])
            {
                UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            };
            using var process = Process.Start(info);
            if (process is null)
            {
                return string.Empty;
            }

            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(15)))
            {
                process.Kill(entireProcessTree: true);
                return string.Empty;
            }

            var match = System.Text.RegularExpressions.Regex.Match(stdout.Result + "\n" + stderr.Result, @"(?:POV-Ray|Blender)\s+v?(\d+(?:\.\d+)+)");
            return match.Success ? match.Groups[1].Value : string.Empty;
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            return string.Empty;
        }
    }

    /// <inheritdoc/>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        Log.Draining(_logger, (long)_options.DrainGrace.TotalMilliseconds, _held.Count);
        _drainKill.CancelAfter(_options.DrainGrace);
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        Directory.CreateDirectory(Path.Combine(_options.WorkDirectory, "jobs"));
        Log.Started(_logger, _options.Name, _options.Server.ToString(), string.Join(",", _installations.Select(i => i.Host)), _options.Slots,
            _options.WorkDirectory);
        RemoveOldJobFolders();
        var leftovers = ReportLeftoversAsync();
        var heartbeat = HeartbeatLoopAsync(_hardStop.Token);
        var reporter = ReportLoopAsync(_hardStop.Token);
        var flusher = FlushLogLoopAsync(_hardStop.Token);
        var slots = Enumerable.Range(0, _options.Slots).Select(_ => SlotLoopAsync(stoppingToken)).ToArray();
        try
        {
            await Task.WhenAll(slots).ConfigureAwait(false);
        }
        finally
        {
            // Tasks leased ahead and never started go back (not counted as attempts), with the last reports.
            await FlushReportsAsync().ConfigureAwait(false);
            await _hardStop.CancelAsync().ConfigureAwait(false);
            foreach (var background in new[] { heartbeat, leftovers, reporter, flusher })
            {
                try
                {
                    await background.ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }

            _channel.Dispose();
        }
    }

    private async Task ReportLeftoversAsync()
    {
        // Attempts a previous run of this agent did not finish (it was killed): their processes are killed first, then the
        // attempts are reported failed with their own lease numbers, so the server requeues them now rather than after the
        // lease, and fences them off if it already did.
        foreach (var entry in _records.ReadAll())
        {
            var killed = TaskProcesses.KillLeftover(entry.Pid, entry.StartTime);
            Log.Leftover(_logger, entry.JobId, entry.TaskId, entry.Lease, killed);
            // One that never started a process (leased ahead, or its files were being fetched) is handed back: not an attempt.
            var report = entry.Pid == 0
                ? new CompleteRequest
                {
                    Agent = _options.Name, JobId = entry.JobId, TaskId = entry.TaskId, Lease = entry.Lease, Outcome = 2, ExitCode = -1,
                    Message = "the agent holding it stopped unexpectedly (killed or crashed) before it started; handed back when it started again",
                }
                : new CompleteRequest
                {
                    Agent = _options.Name, JobId = entry.JobId, TaskId = entry.TaskId, Lease = entry.Lease, Outcome = 1, ExitCode = -1,
                    Message = "the agent running it stopped unexpectedly (killed or crashed); its processes were killed when it started again",
                };
            report.LogTail = ByteString.CopyFromUtf8(report.Message + "\n");
            await ReportAsync(report).ConfigureAwait(false);
            _records.Remove(entry.JobId, entry.TaskId);
        }
    }

    private async Task SlotLoopAsync(CancellationToken stoppingToken)
    {
        var backoff = _options.Backoff;
        Task? reported = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            var next = TakeReady();
            while (next is null && reported is not null)
            {
                // The call carrying this slot's last report also leases: wait for it (or for an earlier call's leases) rather than poll.
                Task changed;
                lock (_queueGate)
                {
                    if (_ready.TryDequeue(out next) || reported.IsCompleted)
                    {
                        break;
                    }

                    changed = _readyChanged.Task;
                }

                await Task.WhenAny(changed, reported).ConfigureAwait(false);
            }

            reported = null;
            if (next is null)
            {
                LeaseReply reply;
                try
                {
                    var request = new LeaseRequest { Agent = _options.Name, WaitMs = (long)_options.Poll.TotalMilliseconds };
                    request.Hosts.Add(_installations);
                    reply = await _agents.LeaseAsync(request, _headers, deadline: DateTime.UtcNow + _options.Poll + TimeSpan.FromSeconds(10),
                        cancellationToken: stoppingToken).ConfigureAwait(false);
                    backoff = _options.Backoff;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (RpcException ex) when (ex.StatusCode is StatusCode.Unauthenticated or StatusCode.PermissionDenied)
                {
                    Log.Refused(_logger, ex.Status.Detail);
                    await DelayAsync(_options.MaxBackoff, stoppingToken).ConfigureAwait(false);
                    continue;
                }
                catch (RpcException ex)
                {
                    Log.Retrying(_logger, ex.StatusCode.ToString(), (long)backoff.TotalMilliseconds);
                    await DelayAsync(backoff, stoppingToken).ConfigureAwait(false);
                    backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
                    continue;
                }

                if (!reply.HasTask)
                {
                    continue;
                }

                next = Register(reply);
            }

            if (next.Held.Cancel.IsCancellationRequested)
            {
                // Stopped or superseded before it started: reported all the same (the server rejects it by its lease number).
                reported = Enqueue(new CompleteRequest
                {
                    Agent = _options.Name, JobId = next.Lease.JobId, TaskId = next.Lease.TaskId, Lease = next.Lease.Lease, Outcome = 1, ExitCode = -1,
                    Message = "stopped by the server before it started",
                }, next.Held);
                continue;
            }

            FollowServerHeartbeat(next.Lease.HeartbeatMs);
            Interlocked.Increment(ref _running);
            CompleteRequest? report;
            try
            {
                report = await RunTaskAsync(next.Lease, next.Held).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The agent's own folder failed it (disk full, permissions): the lease lapses and the task runs elsewhere.
                Log.TaskError(_logger, next.Lease.JobId, next.Lease.TaskId, ex);
                Interlocked.Decrement(ref _running);
                await DelayAsync(_options.MaxBackoff, stoppingToken).ConfigureAwait(false);
                continue;
            }

            Interlocked.Decrement(ref _running);
            reported = Enqueue(report, next.Held);
        }
    }

    /// <summary>Takes a leased task in: held (so heartbeats renew it) and journalled (so a restarted agent reports it).</summary>
    private Ahead Register(LeaseReply lease)
    {
        var key = (lease.JobId, lease.TaskId);
        var held = new Held(lease.Lease);
        if (_held.TryGetValue(key, out var superseded))
        {
            // The server handed this task out again (it was restarted by name): the older attempt here is over.
            try
            {
                superseded.Cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        _held[key] = held;
        _records.Write(new RunningRecords.Entry(lease.JobId, lease.TaskId, lease.Lease, 0, 0));
        return new Ahead(lease, held, Environment.TickCount64);
    }

    private void Forget(string jobId, string taskId, Held held)
    {
        if (_held.TryGetValue((jobId, taskId), out var current) && ReferenceEquals(current, held))
        {
            _held.TryRemove((jobId, taskId), out _);
            _records.Remove(jobId, taskId);
        }

        held.Cancel.Dispose();
    }

    private Ahead? TakeReady()
    {
        lock (_queueGate)
        {
            return _ready.TryDequeue(out var ahead) ? ahead : null;
        }
    }

    /// <summary>Queues a report for the reporter; the task completes once the call carrying it has returned.</summary>
    private Task Enqueue(CompleteRequest report, Held? held)
    {
        Task sent;
        bool wake;
        lock (_queueGate)
        {
            if (_pending.Count == 0)
            {
                _oldestPendingTicks = Environment.TickCount64;
            }

            _pending.Add((report, held));
            sent = _pendingSent.Task;
            // The reporter is woken for the first report of a batch (to time it) and when the batch is due, not for every report:
            // each wake-up is a thread switch, which cost more than a short task's report.
            wake = _pending.Count == 1 || IsDue(Environment.TickCount64);
        }

        if (wake)
        {
            _reportSignal.Release();
        }

        return sent;
    }

    /// <summary>Hands back the tasks leased ahead that <paramref name="which"/> selects (reported interrupted: not an attempt).</summary>
    private void HandBack(Func<Ahead, bool> which, string message)
    {
        List<Ahead> back = [];
        lock (_queueGate)
        {
            var keep = new List<Ahead>(_ready.Count);
            while (_ready.TryDequeue(out var ahead))
            {
                (which(ahead) ? back : keep).Add(ahead);
            }

            foreach (var ahead in keep)
            {
                _ready.Enqueue(ahead);
            }
        }

        if (back.Count > 0)
        {
            // A task held a slot long enough for these to wait: no more leasing ahead (the same call would lease them back).
            _shortTasks = false;
        }

        foreach (var ahead in back)
        {
            if (ahead.Held.Cancel.IsCancellationRequested)
            {
                Forget(ahead.Lease.JobId, ahead.Lease.TaskId, ahead.Held);
                continue;
            }

            Log.HandingBack(_logger, ahead.Lease.JobId, ahead.Lease.TaskId, ahead.Lease.Lease);
            Enqueue(new CompleteRequest
            {
                Agent = _options.Name, JobId = ahead.Lease.JobId, TaskId = ahead.Lease.TaskId, Lease = ahead.Lease.Lease, Outcome = 2, ExitCode = -1,
                Message = message,
            }, ahead.Held);
        }
    }

    /// <summary>Stops leasing ahead, hands back what waits here, and sends every queued report now.</summary>
    private async Task FlushReportsAsync()
    {
        _flushing = true;
        Task inFlight;
        lock (_queueGate)
        {
            inFlight = _lastSend;
        }

        // A call already on its way may bring leases: they go back too.
        await inFlight.ConfigureAwait(false);
        HandBack(_ => true, "interrupted: the agent is stopping; leased ahead, never started");
        Task sent;
        bool pending;
        lock (_queueGate)
        {
            // With nothing pending, the reporter may still have taken the last batch since `inFlight` was read: it is
            // waited for too, or the stop that follows would cancel its call and lose those reports.
            pending = _pending.Count > 0;
            sent = pending ? _pendingSent.Task : _lastSend;
        }

        if (pending)
        {
            _reportSignal.Release();
        }

        await sent.ConfigureAwait(false);
    }

    private async Task ReportLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan wait;
            lock (_queueGate)
            {
                wait = _pending.Count > 0 ? ReportDelay : _ready.Count > 0 ? AheadWait / 4 : Timeout.InfiniteTimeSpan;
            }

            try
            {
                await _reportSignal.WaitAsync(wait, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            // A task leased ahead that waited long is behind a long task: another agent may run it now.
            var now = Environment.TickCount64;
            HandBack(a => now - a.LeasedAtTicks > (long)AheadWait.TotalMilliseconds, "interrupted: leased ahead, handed back while a long task ran");
            List<(CompleteRequest Report, Held? Held)> batch;
            TaskCompletionSource sent;
            int want;
            lock (_queueGate)
            {
                if (_pending.Count == 0 || !IsDue(now))
                {
                    continue;
                }

                batch = _pending;
                sent = _pendingSent;
                _lastSend = sent.Task;
                _pending = [];
                _pendingSent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                var capacity = _options.Slots + (_shortTasks ? _options.Prefetch : 0);
                want = _flushing ? 0 : Math.Max(0, capacity - Volatile.Read(ref _running) - _ready.Count);
            }

            try
            {
                await SendReportsAsync(batch, want).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The journal could not be written (disk full): the reporter must live on, or no slot would hear of its reports again.
                Log.TaskError(_logger, batch[0].Report.JobId, batch[0].Report.TaskId, ex);
            }
            finally
            {
                sent.TrySetResult();
            }
        }

        // Stopping: nobody waits for reports any more.
        lock (_queueGate)
        {
            _pendingSent.TrySetResult();
        }
    }

    /// <summary>Whether the pending reports should go now: a slot could run dry, enough wait to share a call, or the oldest waited long
    /// enough. Called under the queue's lock.</summary>
    private bool IsDue(long now) =>
        _flushing || _ready.Count <= _options.Slots || _pending.Count >= Math.Max(1, _options.Prefetch)
        || now - _oldestPendingTicks >= (long)ReportDelay.TotalMilliseconds;

    private async Task SendReportsAsync(List<(CompleteRequest Report, Held? Held)> batch, int want)
    {
        var request = new ReportRequest { Agent = _options.Name };
        foreach (var (report, _) in batch)
        {
            request.Reports.Add(report);
        }

        if (want > 0)
        {
            request.Next = new LeaseRequest { Agent = _options.Name, MaxTasks = want };
            request.Next.Hosts.Add(_installations);
        }

        var backoff = _options.Backoff;
        ReportReply? reply = null;
        while (reply is null)
        {
            try
            {
                // Reported even when the server withdrew a lease: the lease number lets the server reject it.
                reply = await _agents.ReportAsync(request, _headers, deadline: DateTime.UtcNow + TimeSpan.FromSeconds(30), cancellationToken: _hardStop.Token)
                    .ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.FailedPrecondition or StatusCode.InvalidArgument or StatusCode.NotFound)
            {
                Log.Rejected(_logger, batch[0].Report.JobId, batch[0].Report.TaskId, ex.Status.Detail);
                break;
            }
            catch (RpcException ex) when (!_hardStop.IsCancellationRequested)
            {
                // Keep the results until the server is back: its restart grace keeps the leases alive meanwhile.
                Log.Retrying(_logger, ex.StatusCode.ToString(), (long)backoff.TotalMilliseconds);
                await DelayAsync(backoff, _hardStop.Token).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
            }
            catch (RpcException)
            {
                break;
            }
        }

        foreach (var rejected in reply?.Rejected ?? [])
        {
            Log.Rejected(_logger, rejected.JobId, rejected.TaskId, rejected.Reason);
        }

        foreach (var (report, held) in batch)
        {
            Log.Reported(_logger, report.JobId, report.TaskId, report.Outcome switch { 0 => "succeeded", 2 => "interrupted", _ => "failed" });
            if (held is not null)
            {
                Forget(report.JobId, report.TaskId, held);
            }
        }

        var registered = reply is null ? [] : reply.Leases.Select(Register).ToList();
        TaskCompletionSource changed;
        lock (_queueGate)
        {
            foreach (var ahead in registered)
            {
                _ready.Enqueue(ahead);
            }

            changed = _readyChanged;
            _readyChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    private static async Task DelayAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void RemoveOldJobFolders()
    {
        // Job folders of finished jobs would pile up forever; the blob cache keeps their inputs for the next job.
        var cutoff = DateTime.UtcNow - _options.KeepJobs;
        foreach (var folder in Directory.EnumerateDirectories(Path.Combine(_options.WorkDirectory, "jobs")))
        {
            var jobId = Path.GetFileName(folder);
            if (Directory.GetLastWriteTimeUtc(folder) < cutoff && !_held.Keys.Any(k => k.JobId == jobId))
            {
                try
                {
                    foreach (var key in _known.Keys.Where(k => k.JobId == jobId))
                    {
                        _known.TryRemove(key, out _);
                    }

                    Directory.Delete(folder, recursive: true);
                }
                catch (IOException)
                {
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }

        // Cached blobs no job used for as long are removed too (a job folder that still links one keeps its own copy).
        foreach (var blob in Directory.EnumerateFiles(_cache.Root, "*", SearchOption.AllDirectories))
        {
            try
            {
                if (File.GetLastWriteTimeUtc(blob) < cutoff)
                {
                    File.Delete(blob);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    private async Task HeartbeatLoopAsync(CancellationToken cancellationToken)
    {
        var lastCleanup = DateTime.UtcNow;
        while (await _heartbeatTimer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            if (DateTime.UtcNow - lastCleanup > TimeSpan.FromHours(1))
            {
                lastCleanup = DateTime.UtcNow;
                RemoveOldJobFolders();
            }

            var request = new HeartbeatRequest { Agent = _options.Name };
            request.Hosts.Add(_installations);
            foreach (var ((jobId, taskId), held) in _held)
            {
                request.Tasks.Add(new HeldTask { JobId = jobId, TaskId = taskId, Lease = held.Lease });
            }

            try
            {
                var reply = await _agents.HeartbeatAsync(request, _headers, deadline: DateTime.UtcNow + _options.Heartbeat + TimeSpan.FromSeconds(5),
                    cancellationToken: cancellationToken).ConfigureAwait(false);
                FollowServerHeartbeat(reply.HeartbeatMs);
                foreach (var cancel in reply.Cancel)
                {
                    if (_held.TryGetValue((cancel.JobId, cancel.TaskId), out var held) && held.Lease == cancel.Lease)
                    {
                        Log.Cancelling(_logger, cancel.JobId, cancel.TaskId, "the server no longer holds this lease (stopped or superseded)");
                        try
                        {
                            await held.Cancel.CancelAsync().ConfigureAwait(false);
                        }
                        catch (ObjectDisposedException)
                        {
                            // It ended meanwhile.
                        }
                    }
                }
            }
            catch (RpcException)
            {
                // The server is down or restarting: keep running, keep trying; its restart grace covers the gap.
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Never let the heartbeat die: without it every lease this agent holds would lapse.
                Log.HeartbeatFailed(_logger, ex);
            }
        }
    }

    private void FollowServerHeartbeat(long milliseconds)
    {
        // A server with shorter leases than this agent was told about sets the pace: its leases must not lapse between beats.
        if (milliseconds > 0 && TimeSpan.FromMilliseconds(milliseconds) < _heartbeatTimer.Period)
        {
            _heartbeatTimer.Period = TimeSpan.FromMilliseconds(milliseconds);
        }
    }

    private async Task<CompleteRequest> RunTaskAsync(LeaseReply lease, Held held)
    {
        var started = Environment.TickCount64;
        Log.Running(_logger, lease.JobId, lease.TaskId, lease.Attempt, lease.Lease);
        var output = new OutputBuffer();
        // One flush loop serves every running task (a timer and a loop per task cost more than a short task's whole run).
        _streaming[held] = (lease, output);
        var complete = new CompleteRequest { Agent = _options.Name, JobId = lease.JobId, TaskId = lease.TaskId, Lease = lease.Lease };
        try
        {
            var (outcome, exitCode, message) = await ExecuteAsync(lease, output, held).ConfigureAwait(false);
            if (outcome == 0)
            {
                (outcome, message) = await CollectOutputsAsync(lease, held, complete).ConfigureAwait(false);
            }

            complete.Outcome = outcome;
            complete.ExitCode = exitCode;
            complete.Message = message;
            if (message.Length > 0)
            {
                output.Append(message + "\n");
            }
        }
        catch (OperationCanceledException) when (held.Cancel.IsCancellationRequested)
        {
            // Stopped while its files were being fetched.
            complete.Outcome = 1;
            complete.ExitCode = -1;
            complete.Message = "stopped by the server";
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.TaskError(_logger, lease.JobId, lease.TaskId, ex);
            complete.Outcome = 1;
            complete.ExitCode = -1;
            complete.Message = "agent error: " + ex.Message;
            output.Append(complete.Message + "\n");
        }
        finally
        {
            _streaming.TryRemove(held, out _);
            Task flushing;
            lock (held)
            {
                held.Ended = true;
                flushing = held.Flushing;
            }

            await flushing.ConfigureAwait(false);
        }

        complete.LogTail = ByteString.CopyFromUtf8(output.Take());
        // Short, successful tasks make leasing ahead worth it; a long or failing one stops it (a failing job is not hoarded).
        _shortTasks = complete.Outcome == 0 && Environment.TickCount64 - started < (long)ShortTask.TotalMilliseconds;
        return complete;
    }

    private async Task<LeaseReply?> ReportAsync(CompleteRequest complete)
    {
        var backoff = _options.Backoff;
        while (true)
        {
            try
            {
                var reply = await _agents.CompleteAsync(complete, _headers, deadline: DateTime.UtcNow + TimeSpan.FromSeconds(30), cancellationToken: _hardStop.Token)
                    .ConfigureAwait(false);
                Log.Reported(_logger, complete.JobId, complete.TaskId, complete.Outcome switch { 0 => "succeeded", 2 => "interrupted", _ => "failed" });
                return reply.Next;
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.FailedPrecondition or StatusCode.InvalidArgument or StatusCode.NotFound)
            {
                Log.Rejected(_logger, complete.JobId, complete.TaskId, ex.Status.Detail);
                return null;
            }
            catch (RpcException ex) when (!_hardStop.IsCancellationRequested)
            {
                // Keep the result until the server is back: its restart grace keeps the lease alive meanwhile.
                Log.Retrying(_logger, ex.StatusCode.ToString(), (long)backoff.TotalMilliseconds);
                await DelayAsync(backoff, _hardStop.Token).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
            }
            catch (RpcException)
            {
                return null;
            }
        }
    }

    private readonly ConcurrentDictionary<Held, (LeaseReply Lease, OutputBuffer Output)> _streaming = new();

    /// <summary>Sends the whole lines running tasks printed, every <see cref="AgentOptions.LogFlush"/>; what is left goes with the report.</summary>
    private async Task FlushLogLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.LogFlush);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            foreach (var (held, (lease, output)) in _streaming)
            {
                TaskCompletionSource call;
                string text;
                lock (held)
                {
                    if (held.Ended || (text = output.TakeLines()).Length == 0)
                    {
                        continue;
                    }

                    call = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    held.Flushing = call.Task;
                }

                try
                {
                    // Not cancelled when the task ends: a call cut off after the server wrote the text would send it twice.
                    await _agents.AppendLogAsync(new AppendLogRequest { Agent = _options.Name, JobId = lease.JobId, TaskId = lease.TaskId, Lease = lease.Lease, Text = ByteString.CopyFromUtf8(text) },
                        _headers, deadline: DateTime.UtcNow + TimeSpan.FromSeconds(10), cancellationToken: _hardStop.Token).ConfigureAwait(false);
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition)
                {
                    try
                    {
                        await held.Cancel.CancelAsync().ConfigureAwait(false);
                    }
                    catch (ObjectDisposedException)
                    {
                    }
                }
                catch (RpcException)
                {
                    // Keep the text for the next flush or the final report.
                    output.PutBack(text);
                }
                finally
                {
                    call.TrySetResult();
                }
            }
        }
    }

    private async Task<(int Outcome, int ExitCode, string Message)> ExecuteAsync(LeaseReply lease, OutputBuffer output, Held held)
    {
        if (lease.JobId.Length == 0 || lease.JobId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
        {
            return (1, -1, $"job id '{lease.JobId}' is not a safe folder name");
        }

        var folder = Path.Combine(_options.WorkDirectory, "jobs", lease.JobId);
        Directory.CreateDirectory(folder);
        await LayOutAsync(lease.JobId, folder, lease.Files, held.Cancel.Token).ConfigureAwait(false);
        if (lease.CollectProduced)
        {
            held.Before = Snapshot(folder);
        }

        var environment = new Dictionary<string, string>(lease.Environment)
        {
            ["FARM_JOB_ID"] = lease.JobId,
            ["FARM_TASK_ID"] = lease.TaskId,
            ["FARM_ATTEMPT"] = lease.Attempt.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["FARM_LEASE"] = lease.Lease.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["FARM_AGENT"] = _options.Name,
        };
        using var timeout = lease.TimeoutMs > 0 ? new CancellationTokenSource(TimeSpan.FromMilliseconds(lease.TimeoutMs)) : new CancellationTokenSource();
        using var any = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, held.Cancel.Token, _drainKill.Token);
        for (var i = 0; i < lease.Commands.Count; i++)
        {
            var command = lease.Commands[i];
            var executable = ResolveExecutable(command.Executable, folder, environment.GetValueOrDefault("PATH"));
            if (executable is null)
            {
                return (1, -1, $"command {i + 1}: could not start '{command.Executable}': not found (no such file, or not on PATH)");
            }

            var (exitCode, startError) = TaskProcess.IsSupported
                ? await RunSpawnedAsync(executable, command, environment, folder, lease, output, any.Token).ConfigureAwait(false)
                : await RunWithSetsidAsync(executable, command, environment, folder, lease, output, any.Token).ConfigureAwait(false);
            if (startError is not null)
            {
                return (1, -1, $"command {i + 1}: could not start '{command.Executable}': {startError}");
            }

            if (held.Cancel.IsCancellationRequested)
            {
                return (1, -1, "stopped by the server");
            }

            if (timeout.IsCancellationRequested)
            {
                return (1, -1, $"timed out after {lease.TimeoutMs} ms; the process tree was killed");
            }

            if (_drainKill.IsCancellationRequested)
            {
                return (2, -1, "interrupted: the agent is stopping");
            }

            if (exitCode != 0)
            {
                return (1, exitCode, $"command {i + 1} ({command.Executable}) exited with {TaskProcesses.DescribeExit(exitCode)}");
            }
        }

        return (0, 0, string.Empty);
    }

    private Task<(int ExitCode, string? StartError)> RunSpawnedAsync(string executable, Protocol.Command command, Dictionary<string, string> environment,
        string folder, LeaseReply lease, OutputBuffer output, CancellationToken cancellationToken)
    {
        TaskProcess process;
        try
        {
            process = TaskProcess.Start(executable, command.Arguments, FullEnvironment(environment), folder);
        }
        catch (IOException ex)
        {
            return Task.FromResult<(int, string?)>((-1, ex.Message));
        }

        _records.Write(new RunningRecords.Entry(lease.JobId, lease.TaskId, lease.Lease, process.Pid, TaskProcesses.StartTime(process.Pid) ?? 0));
        // The output is read until the command has ended on a pool thread (no thread created per task); a stop, a timeout
        // or a drain kills the whole group from the token's callback, and what the command left in its group is killed
        // when it ends.
        using (cancellationToken.Register(process.KillGroup))
        {
            // On this slot's own pool thread: handing it to another thread cost a wake-up per task (the pool keeps a thread per slot spare).
            var exitCode = process.RunToEnd(output.Append);
            return Task.FromResult<(int, string?)>((exitCode, null));
        }
    }

    private Dictionary<string, string> FullEnvironment(Dictionary<string, string> task)
    {
        // The agent's own environment (its token already removed), then the job's and the farm's variables.
        var all = new Dictionary<string, string>(_baseEnvironment.Value, StringComparer.Ordinal);
        foreach (var pair in task)
        {
            all[pair.Key] = pair.Value;
        }

        return all;
    }

    private readonly Lazy<Dictionary<string, string>> _baseEnvironment = new(() =>
        Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? string.Empty, StringComparer.Ordinal));

    private async Task<(int ExitCode, string? StartError)> RunWithSetsidAsync(string executable, Protocol.Command command, Dictionary<string, string> environment,
        string folder, LeaseReply lease, OutputBuffer output, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo
        {
            WorkingDirectory = folder, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = false,
        };
        if (TaskProcesses.Setsid is { } setsid)
        {
            // A session of its own: the agent's signals never reach the task, and the whole group can be killed.
            info.FileName = setsid;
            info.ArgumentList.Add("--wait");
            info.ArgumentList.Add(executable);
        }
        else
        {
            info.FileName = executable;
        }

        foreach (var argument in command.Arguments)
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var pair in environment)
        {
            info.Environment[pair.Key] = pair.Value;
        }

        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("no process");
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return (-1, ex.Message);
        }

        using (process)
        {
            _records.Write(new RunningRecords.Entry(lease.JobId, lease.TaskId, lease.Lease, process.Id, TaskProcesses.StartTime(process.Id) ?? 0));
            var stdout = PumpAsync(process.StandardOutput, output);
            var stderr = PumpAsync(process.StandardError, output);
            try
            {
                await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                KillTask(process);
                await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }

            TaskProcesses.KillGroup(process.Id);
            await Task.WhenAny(Task.WhenAll(stdout, stderr), Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
            return (process.ExitCode, null);
        }
    }

    private static void KillTask(Process process)
    {
        TaskProcesses.KillGroup(process.Id);
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    private string? ResolveExecutable(string executable, string folder, string? taskPath)
    {
        var installation = _installations.FirstOrDefault(h => h.Host == executable && h.Executable.Length > 0);
        if (installation is not null)
        {
            executable = installation.Executable;
        }

        // A bare name is found once per PATH, then only checked to still be there (probing every PATH folder cost ~10 system calls a task).
        return _executables.Find(executable, folder, taskPath ?? Environment.GetEnvironmentVariable("PATH"));
    }

    private readonly ExecutableLookup _executables = new();

    private static async Task PumpAsync(StreamReader reader, OutputBuffer output)
    {
        var buffer = new char[4096];
        int read;
        while ((read = await reader.ReadAsync(buffer).ConfigureAwait(false)) > 0)
        {
            output.Append(new string(buffer, 0, read));
        }
    }

    private async Task LayOutAsync(string jobId, string folder, IEnumerable<FileEntry> files, CancellationToken cancellationToken)
    {
        // A later entry for a path wins (the server orders them: staged files, what dependencies produced, their outputs).
        var wanted = new Dictionary<string, FileEntry>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            wanted[NormalizePath(file.RelativePath)] = file;
        }

        foreach (var (relative, file) in wanted)
        {
            var destination = JobPaths.ResolveInside(folder, relative, "file");
            var existing = new FileInfo(destination);
            if (existing.Exists && existing.Length == file.Size)
            {
                if (_known.TryGetValue((jobId, relative), out var known))
                {
                    if (known.Hash == file.Hash && known.Size == existing.Length && known.Modified == existing.LastWriteTimeUtc)
                    {
                        continue;
                    }
                }
                else if (await ContentHash.ComputeFileAsync(destination, cancellationToken).ConfigureAwait(false) == file.Hash)
                {
                    // There from before this agent started (or made by a task here): right content, nothing to fetch.
                    Remember(jobId, relative, file.Hash, destination);
                    continue;
                }
            }

            await EnsureCachedAsync(file.Hash, file.Size, cancellationToken).ConfigureAwait(false);
            await _cache.LinkOrCopyAsync(file.Hash, destination, cancellationToken).ConfigureAwait(false);
            Remember(jobId, relative, file.Hash, destination);
        }
    }

    private void Remember(string jobId, string relative, string hash, string path)
    {
        var info = new FileInfo(path);
        _known[(jobId, relative)] = new Known(hash, info.Length, info.LastWriteTimeUtc);
    }

    private static string NormalizePath(string path)
    {
        var normalized = path.Replace('\\', '/');
        while (normalized.StartsWith("./", StringComparison.Ordinal))
        {
            normalized = normalized[2..];
        }

        return normalized;
    }

    private static readonly EnumerationOptions EveryRegularFile = new()
    {
        RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint, IgnoreInaccessible = true, ReturnSpecialDirectories = false,
    };

    private static Dictionary<string, (long Size, DateTime Modified)> Snapshot(string folder)
    {
        // Regular files only: a symbolic link (which might lead out of the folder) is never collected.
        var files = new Dictionary<string, (long, DateTime)>(StringComparer.Ordinal);
        foreach (var file in new DirectoryInfo(folder).EnumerateFiles("*", EveryRegularFile))
        {
            files[Path.GetRelativePath(folder, file.FullName).Replace(Path.DirectorySeparatorChar, '/')] = (file.Length, file.LastWriteTimeUtc);
        }

        return files;
    }

    private bool IsCached(string hash, long size)
    {
        if (!_cache.Contains(hash))
        {
            return false;
        }

        var path = _cache.GetPath(hash);
        if (new FileInfo(path).Length != size)
        {
            // A task wrote through a hard link into the cache (possible for root, which ignores the read-only mode): fetch it again.
            File.Delete(path);
            return false;
        }

        return true;
    }

    private async Task EnsureCachedAsync(string hash, long size, CancellationToken cancellationToken)
    {
        if (IsCached(hash, size))
        {
            return;
        }

        var gate = _downloads.GetOrAdd(hash, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (IsCached(hash, size))
            {
                return;
            }

            using var call = _blobs.Download(new DownloadRequest { Hash = hash }, _headers, cancellationToken: cancellationToken);
            var stream = new BlobChunkStream(call.ResponseStream, ReadOnlyMemory<byte>.Empty, cancellationToken);
            await _cache.AddStreamAsync(stream, hash, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task<(int Outcome, string Message)> CollectOutputsAsync(LeaseReply lease, Held held, CompleteRequest complete)
    {
        var folder = Path.Combine(_options.WorkDirectory, "jobs", lease.JobId);
        var declared = new HashSet<string>(StringComparer.Ordinal);
        foreach (var relative in lease.Outputs)
        {
            var path = JobPaths.ResolveInside(folder, relative, "output");
            if (!File.Exists(path))
            {
                return (1, $"missing output {relative}");
            }

            var hash = await _cache.AddFileAsync(path).ConfigureAwait(false);
            complete.Outputs.Add(new FileEntry { RelativePath = relative, Hash = hash, Size = new FileInfo(path).Length });
            declared.Add(NormalizePath(relative));
            Remember(lease.JobId, NormalizePath(relative), hash, path);
        }

        if (held.Before is { } before)
        {
            // Its dependents may run elsewhere: every file it created or changed travels with the report (tiles for a merge).
            foreach (var (relative, (size, modified)) in Snapshot(folder))
            {
                if (declared.Contains(relative) || (before.TryGetValue(relative, out var was) && was == (size, modified)))
                {
                    continue;
                }

                var path = Path.Combine(folder, relative);
                var hash = await _cache.AddFileAsync(path).ConfigureAwait(false);
                complete.Produced.Add(new FileEntry
                {
                    RelativePath = relative, Hash = hash, Size = size,
                    ModifiedUs = (modified - DateTime.UnixEpoch).Ticks / (TimeSpan.TicksPerMillisecond / 1000),
                });
                Remember(lease.JobId, relative, hash, path);
            }
        }

        if (complete.Outputs.Count == 0 && complete.Produced.Count == 0)
        {
            return (0, string.Empty);
        }

        var query = new FindMissingRequest();
        query.Hashes.Add(complete.Outputs.Concat(complete.Produced).Select(o => o.Hash).Distinct());
        var missing = await WithRetryAsync(() => _blobs.FindMissingAsync(query, _headers, cancellationToken: _hardStop.Token).ResponseAsync).ConfigureAwait(false);
        foreach (var hash in missing.Missing)
        {
            await WithRetryAsync(() => UploadAsync(hash)).ConfigureAwait(false);
        }

        return (0, string.Empty);
    }

    private async Task<bool> UploadAsync(string hash)
    {
        using var call = _blobs.Upload(_headers, cancellationToken: _hardStop.Token);
        var file = new FileStream(_cache.GetPath(hash), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
        await using (file.ConfigureAwait(false))
        {
            var buffer = new byte[1 << 20];
            var first = true;
            int read;
            while ((read = await file.ReadAsync(buffer, _hardStop.Token).ConfigureAwait(false)) > 0 || first)
            {
                await call.RequestStream.WriteAsync(new BlobChunk { Hash = first ? hash : string.Empty, Data = ByteString.CopyFrom(buffer, 0, read) })
                    .ConfigureAwait(false);
                first = false;
                if (read == 0)
                {
                    break;
                }
            }
        }

        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        await call.ResponseAsync.ConfigureAwait(false);
        return true;
    }

    private async Task<T> WithRetryAsync<T>(Func<Task<T>> action)
    {
        var backoff = _options.Backoff;
        while (true)
        {
            try
            {
                return await action().ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.DeadlineExceeded
                && !_hardStop.IsCancellationRequested)
            {
                Log.Retrying(_logger, ex.StatusCode.ToString(), (long)backoff.TotalMilliseconds);
                await DelayAsync(backoff, _hardStop.Token).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
            }
        }
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        _drainKill.Dispose();
        _hardStop.Dispose();
        _reportSignal.Dispose();
        _records.Dispose();
        base.Dispose();
    }

    /// <summary>Task output waiting to be sent; whole lines go out while the task runs, the rest with the report.</summary>
    private sealed class OutputBuffer
    {
        private readonly StringBuilder _text = new();
        private readonly Lock _gate = new();

        public void Append(string text)
        {
            lock (_gate)
            {
                _text.Append(text);
            }
        }

        public void PutBack(string text)
        {
            lock (_gate)
            {
                _text.Insert(0, text);
            }
        }

        public string TakeLines()
        {
            lock (_gate)
            {
                var text = _text.ToString();
                var end = text.LastIndexOf('\n');
                if (end < 0)
                {
                    return string.Empty;
                }

                _text.Remove(0, end + 1);
                return text[..(end + 1)];
            }
        }

        public string Take()
        {
            lock (_gate)
            {
                var text = _text.ToString();
                _text.Clear();
                return text;
            }
        }
    }
}
