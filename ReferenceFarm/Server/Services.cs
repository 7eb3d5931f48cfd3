using FarmApi;
using FarmApi.Hashing;
using Google.Protobuf;
using Grpc.Core;
using ReferenceFarm.Protocol;

namespace ReferenceFarm.Server;

/// <summary>The client-facing service: submit, list, read, control. Client tokens only.</summary>
/// <param name="farm">The farm.</param>
/// <param name="logger">The logger.</param>
/// <param name="collector">Removes a deleted job's blobs.</param>
public sealed class JobsService(Farm farm, BlobCollector collector, ILogger<JobsService> logger) : Jobs.JobsBase
{
    /// <inheritdoc/>
    public override async Task<PingReply> Ping(PingRequest request, ServerCallContext context)
    {
        var caller = await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        var recent = farm.NowMs() - (long)(farm.Options.Lease.TotalMilliseconds * 2);
        return new PingReply
        {
            ServerVersion = typeof(JobsService).Assembly.GetName().Version?.ToString() ?? "0", Caller = caller.Name, Admin = caller.Admin,
            Agents = farm.Agents.Values.Count(a => a.Seen.ToUnixTimeMilliseconds() >= recent),
        };
    }

    /// <inheritdoc/>
    public override async Task<StageFilesReply> StageFiles(StageFilesRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        RequireContextId(request.ContextId);
        for (var i = 0; i < request.Files.Count; i++)
        {
            var file = request.Files[i];
            var reason = JobPaths.Check(file.RelativePath);
            if (reason is not null)
            {
                throw Invalid($"files[{i}].relative_path: {reason}");
            }

            if (!ContentHash.IsValid(file.Hash))
            {
                throw Invalid($"files[{i}].hash: '{file.Hash}' is not a SHA-256 hash");
            }

            if (!farm.Blobs.Contains(file.Hash))
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"files[{i}]: blob {file.Hash} is not uploaded (upload it first)"));
            }
        }

        await farm.Store.StageAsync(request.ContextId, request.Files, context.CancellationToken).ConfigureAwait(false);
        return new StageFilesReply();
    }

    /// <inheritdoc/>
    public override async Task<SubmitReply> Submit(SubmitRequest request, ServerCallContext context)
    {
        var caller = await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        RequireContextId(request.ContextId);
        var error = Validate(request);
        if (error is not null)
        {
            Log.Refused(logger, nameof(Submit), error);
            throw Invalid(error);
        }

        var (jobId, existing, stagingError) = await farm.Store.SubmitAsync(request, caller.Name, context.CancellationToken).ConfigureAwait(false);
        if (stagingError is not null)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, stagingError));
        }

        if (!existing)
        {
            Log.JobSubmitted(logger, jobId, request.Name, caller.Name, request.Tasks.Count);
            farm.SignalWork();
        }

        return new SubmitReply { JobId = jobId, Existing = existing };
    }

    /// <inheritdoc/>
    public override async Task<GetJobsReply> GetJobs(GetJobsRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        if (request.Limit < 0)
        {
            throw Invalid($"limit must not be negative, not {request.Limit}");
        }

        var reply = new GetJobsReply();
        reply.Jobs.Add(await farm.Store.GetJobsAsync(request, context.CancellationToken).ConfigureAwait(false));
        return reply;
    }

    /// <inheritdoc/>
    public override async Task<JobInfo> GetJob(JobIdRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        return await farm.Store.GetJobAsync(request.JobId, context.CancellationToken).ConfigureAwait(false) ?? throw NotFound(request.JobId);
    }

    /// <inheritdoc/>
    public override async Task GetTasks(JobIdRequest request, IServerStreamWriter<Protocol.TaskInfo> responseStream, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        var tasks = await farm.Store.GetTasksAsync(request.JobId, context.CancellationToken).ConfigureAwait(false) ?? throw NotFound(request.JobId);
        foreach (var task in tasks)
        {
            await responseStream.WriteAsync(task, context.CancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public override async Task<ReadLogReply> ReadLog(ReadLogRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        if (request.Offset < 0)
        {
            throw Invalid($"offset must not be negative, not {request.Offset}");
        }

        var found = await farm.Store.FindForLogAsync(request.JobId, request.TaskId, context.CancellationToken).ConfigureAwait(false)
            ?? throw (string.IsNullOrEmpty(request.TaskId) ? NotFound(request.JobId)
                : new RpcException(new Status(StatusCode.NotFound, $"Job '{request.JobId}' has no task '{request.TaskId}'.")));
        var (bytes, length) = await farm.Logs.ReadAsync(found.Seq, found.TaskIndex, request.Offset, context.CancellationToken).ConfigureAwait(false);
        var next = Math.Max(request.Offset, request.Offset + bytes.Length);
        return new ReadLogReply
        {
            Text = ByteString.CopyFrom(bytes), NextOffset = next,
            Complete = (found.TaskIndex is null ? found.Terminal : found.TaskTerminal) && next >= length,
        };
    }

    /// <inheritdoc/>
    public override async Task<ListOutputsReply> ListOutputs(JobIdRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        var reply = new ListOutputsReply();
        reply.Outputs.Add(await farm.Store.ListOutputsAsync(request.JobId, context.CancellationToken).ConfigureAwait(false) ?? throw NotFound(request.JobId));
        return reply;
    }

    /// <inheritdoc/>
    public override async Task<Empty> StopJob(JobIdRequest request, ServerCallContext context)
    {
        var caller = await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        Check(await farm.Store.StopAsync(request.JobId, caller,
            seq => farm.Logs.AppendJobEventAsync(seq, $"job stopped by {caller.Name}", CancellationToken.None), context.CancellationToken).ConfigureAwait(false),
            request.JobId, "stop");
        Log.JobCommand(logger, request.JobId, "stopped", caller.Name);
        return new Empty();
    }

    /// <inheritdoc/>
    public override async Task<Empty> RestartJob(RestartJobRequest request, ServerCallContext context)
    {
        var caller = await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        var (result, unknown) = await farm.Store.RestartAsync(request.JobId, request.TaskIds, caller, context.CancellationToken).ConfigureAwait(false);
        if (unknown is not null)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"Job '{request.JobId}' has no task '{unknown}'."));
        }

        Check(result, request.JobId, "restart");
        if ((await farm.Store.FindForLogAsync(request.JobId, string.Empty, context.CancellationToken).ConfigureAwait(false)) is { } job)
        {
            var which = request.TaskIds.Count == 0 ? "failed and cancelled tasks" : string.Join(", ", request.TaskIds);
            await farm.Logs.AppendJobEventAsync(job.Seq, $"job restarted by {caller.Name} ({which})", CancellationToken.None).ConfigureAwait(false);
        }

        Log.JobCommand(logger, request.JobId, "restarted", caller.Name);
        farm.SignalWork();
        return new Empty();
    }

    /// <inheritdoc/>
    public override async Task<Empty> DeleteJob(JobIdRequest request, ServerCallContext context)
    {
        var caller = await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        var (result, seq, blobs) = await farm.Store.DeleteAsync(request.JobId, caller, context.CancellationToken).ConfigureAwait(false);
        Check(result, request.JobId, "delete");
        farm.Logs.DeleteJob(seq);
        // Its staged files and outputs go too, unless another job shares them (the store is content-addressed).
        await collector.CollectAsync(blobs, CancellationToken.None).ConfigureAwait(false);

        Log.JobCommand(logger, request.JobId, "deleted", caller.Name);
        return new Empty();
    }

    /// <inheritdoc/>
    public override async Task<Installation> GetInstallation(GetInstallationRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "client").ConfigureAwait(false);
        var found = farm.Agents.Values.OrderByDescending(a => a.Seen).SelectMany(a => a.Hosts).FirstOrDefault(h => h.Host == request.Host);
        return found is null ? new Installation { Host = request.Host, Known = false } : new Installation(found) { Known = true };
    }

    private static void Check(CommandResult result, string jobId, string verb)
    {
        switch (result)
        {
            case CommandResult.NotFound:
                throw NotFound(jobId);
            case CommandResult.Denied:
                throw new RpcException(new Status(StatusCode.PermissionDenied, $"Job '{jobId}' belongs to another client; only it or an admin may {verb} it."));
            case CommandResult.WrongState:
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"Job '{jobId}' is not finished; stop it before you {verb} it."));
        }
    }

    private static RpcException NotFound(string jobId) => new(new Status(StatusCode.NotFound, $"No job '{jobId}'."));

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    private static void RequireContextId(string contextId)
    {
        if (!Guid.TryParse(contextId, out var id) || id == Guid.Empty)
        {
            throw Invalid($"context_id must be a UUID, not '{contextId}'");
        }
    }

    private static string? Validate(SubmitRequest request)
    {
        // The same rules the adapter's public wrapper applies, because a client may call the server directly.
        var job = new JobRequest
        {
            Context = new RenderContext(Guid.Parse(request.ContextId), RenderType.Disk, request.ContextName),
            Name = request.Name,
            TemporaryFolder = "refarm://" + request.ContextId,
            Files = request.Files,
            Priority = request.Priority,
            MaxAttempts = request.MaxAttempts,
            Tasks = request.Tasks.Select(t => new FarmApi.TaskSpec(
                t.Id,
                t.Commands.Select(c => new FarmApi.Command(c.Executable, c.Arguments)).ToList(),
                t.DependsOn,
                t.Outputs,
                string.IsNullOrEmpty(t.Host) ? "command" : t.Host,
                t.TimeoutMs == 0 ? null : TimeSpan.FromMilliseconds(t.TimeoutMs))).ToList(),
        };
        var error = JobRequestValidator.FindError(job);
        return error is null ? null : $"{error.Value.Field}: {error.Value.Reason}";
    }
}

/// <summary>The agent-facing service: lease, heartbeat, logs, reports. Agent tokens only.</summary>
/// <param name="farm">The farm.</param>
/// <param name="logger">The logger.</param>
public sealed class AgentsService(Farm farm, ILogger<AgentsService> logger) : Agents.AgentsBase
{
    /// <inheritdoc/>
    public override async Task<LeaseReply> Lease(LeaseRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "agent").ConfigureAwait(false);
        if (string.IsNullOrWhiteSpace(request.Agent))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "agent must name the agent"));
        }

        farm.Agents[request.Agent] = (farm.Time.GetUtcNow(), request.Hosts.ToArray());
        var wait = TimeSpan.FromMilliseconds(Math.Clamp(request.WaitMs, 0, 60_000));
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        deadline.CancelAfter(wait);
        while (true)
        {
            var signal = farm.WorkSignal;
            var leased = await LeaseOnceAsync(farm, logger, request, context).ConfigureAwait(false);
            if (leased is not null || context.CancellationToken.IsCancellationRequested)
            {
                return leased ?? new LeaseReply { HasTask = false };
            }

            try
            {
                await signal.WaitAsync(deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!context.CancellationToken.IsCancellationRequested)
            {
                return new LeaseReply { HasTask = false };
            }
        }
    }

    /// <inheritdoc/>
    public override async Task<HeartbeatReply> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "agent").ConfigureAwait(false);
        if (request.Hosts.Count > 0)
        {
            farm.Agents[request.Agent] = (farm.Time.GetUtcNow(), request.Hosts.ToArray());
        }
        else if (farm.Agents.TryGetValue(request.Agent, out var known))
        {
            farm.Agents[request.Agent] = (farm.Time.GetUtcNow(), known.Hosts);
        }

        var reply = new HeartbeatReply
        {
            LeaseMs = (long)farm.Options.Lease.TotalMilliseconds, HeartbeatMs = (long)farm.Options.Heartbeat.TotalMilliseconds,
        };
        reply.Cancel.Add(await farm.Store.HeartbeatAsync(request.Agent, request.Tasks, farm.Options.Lease, context.CancellationToken).ConfigureAwait(false));
        return reply;
    }

    /// <inheritdoc/>
    public override async Task<Empty> AppendLog(AppendLogRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "agent").ConfigureAwait(false);
        var current = await farm.Store.FindCurrentLeaseAsync(request.JobId, request.TaskId, request.Lease, request.Agent, context.CancellationToken).ConfigureAwait(false)
            ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, $"Lease {request.Lease} of {request.JobId}/{request.TaskId} is not current."));
        await farm.Logs.AppendTaskOutputAsync(current.Seq, current.Index, request.TaskId, request.Text.ToStringUtf8(), context.CancellationToken)
            .ConfigureAwait(false);
        return new Empty();
    }

    /// <inheritdoc/>
    public override async Task<CompleteReply> Complete(CompleteRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "agent").ConfigureAwait(false);
        if (FindInvalid(farm, request) is { } invalid)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, invalid));
        }

        var next = request.Next is { } asked && asked.Agent == request.Agent ? asked : null;
        if (next is not null)
        {
            farm.Agents[next.Agent] = (farm.Time.GetUtcNow(), next.Hosts.ToArray());
        }

        // One gate and one transaction: the report is checked against the current lease, its log lines written (before the state
        // changes, so a reader who sees the job finished has its whole log), the state changed, and the next task leased.
        var report = await farm.Store.CompleteAsync(request, (seq, index) => WriteReportLogAsync(farm, request, seq, index),
            next is null ? null : Ask(farm, next), CancellationToken.None).ConfigureAwait(false);
        if (!report.Accepted)
        {
            Log.StaleReport(logger, request.Agent, request.JobId, request.TaskId, request.Lease);
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"Report rejected: lease {request.Lease} of {request.JobId}/{request.TaskId} is no longer current (superseded or stopped)."));
        }

        farm.SignalWork();
        var reply = new CompleteReply();
        if (next is not null)
        {
            // Saves the agent a round trip per task: the next lease rides on the report's reply, without waiting.
            reply.Next = (report.Next is null ? null : await HandOverAsync(farm, logger, next, report.Next, context).ConfigureAwait(false))
                ?? new LeaseReply { HasTask = false };
        }

        return reply;
    }

    /// <inheritdoc/>
    public override async Task<ReportReply> Report(ReportRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, "agent").ConfigureAwait(false);
        if (string.IsNullOrWhiteSpace(request.Agent))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "agent must name the agent"));
        }

        var reply = new ReportReply();
        var valid = new List<CompleteRequest>(request.Reports.Count);
        foreach (var report in request.Reports)
        {
            // The call's agent reports: a report naming another is judged as that agent's would be (rejected: not its lease).
            report.Agent = request.Agent;
            if (FindInvalid(farm, report) is { } reason)
            {
                reply.Rejected.Add(new RejectedReport { JobId = report.JobId, TaskId = report.TaskId, Lease = report.Lease, Reason = reason });
            }
            else
            {
                valid.Add(report);
            }
        }

        var next = request.Next is { } asked ? asked : null;
        if (next is not null)
        {
            next.Agent = request.Agent;
            farm.Agents[request.Agent] = (farm.Time.GetUtcNow(), next.Hosts.ToArray());
        }

        var (reports, leased) = await farm.Store.ReportAsync(valid, (report, seq, index) => WriteReportLogAsync(farm, report, seq, index),
            next is null ? null : Ask(farm, next), next is null ? 0 : Math.Clamp(next.MaxTasks, 1, 64), CancellationToken.None).ConfigureAwait(false);
        var accepted = false;
        for (var i = 0; i < reports.Count; i++)
        {
            if (reports[i].Accepted)
            {
                accepted = true;
                continue;
            }

            var stale = valid[i];
            Log.StaleReport(logger, stale.Agent, stale.JobId, stale.TaskId, stale.Lease);
            reply.Rejected.Add(new RejectedReport
            {
                JobId = stale.JobId, TaskId = stale.TaskId, Lease = stale.Lease,
                Reason = "lease is no longer current (superseded or stopped)",
            });
        }

        if (accepted || leased.Count > 0)
        {
            farm.SignalWork();
        }

        foreach (var one in leased)
        {
            if (await HandOverAsync(farm, logger, next!, one, context).ConfigureAwait(false) is { } handed)
            {
                reply.Leases.Add(handed);
            }
        }

        return reply;
    }

    private static string? FindInvalid(Farm farm, CompleteRequest report)
    {
        if (report.Outcome is < 0 or > 2)
        {
            return $"outcome must be 0, 1 or 2, not {report.Outcome}";
        }

        foreach (var output in report.Outputs.Concat(report.Produced))
        {
            if (JobPaths.Check(output.RelativePath) is not null || !ContentHash.IsValid(output.Hash) || !farm.Blobs.Contains(output.Hash))
            {
                return $"output '{output.RelativePath}' is not a safe path with an uploaded blob";
            }
        }

        return null;
    }

    /// <summary>A current report's log lines, then the server's line about it (before the state changes).</summary>
    private static async Task WriteReportLogAsync(Farm farm, CompleteRequest request, long seq, int index)
    {
        if (!request.LogTail.IsEmpty)
        {
            await farm.Logs.AppendTaskOutputAsync(seq, index, request.TaskId, request.LogTail.ToStringUtf8(), CancellationToken.None).ConfigureAwait(false);
        }

        var what = request.Outcome switch
        {
            0 => $"completed on {request.Agent} (exit {request.ExitCode})",
            2 => $"interrupted on {request.Agent}: handed back, not counted as an attempt",
            _ => $"failed on {request.Agent}: {request.Message}",
        };
        await farm.Logs.AppendEventAsync(seq, index, request.TaskId, what, CancellationToken.None).ConfigureAwait(false);
    }

    private static Store.LeaseAsk Ask(Farm farm, LeaseRequest request)
    {
        var hosts = request.Hosts.Select(h => h.Host).Where(h => h.Length > 0).ToList();
        // A blocklist that would leave a job to nobody is not applied: the job keeps its attempts instead of hanging.
        var recent = farm.Time.GetUtcNow() - (farm.Options.Lease * 2);
        var othersCanRun = farm.Agents.Any(other => other.Key != request.Agent && other.Value.Seen >= recent
            && other.Value.Hosts.Any(h => hosts.Contains(h.Host)));
        return new Store.LeaseAsk(request.Agent, hosts, farm.Options.Lease, othersCanRun);
    }

    /// <summary>Leases one task without waiting; takes it back if the caller has gone meanwhile.</summary>
    /// <param name="farm">The farm.</param>
    /// <param name="logger">The logger.</param>
    /// <param name="request">The lease request.</param>
    /// <param name="context">The call.</param>
    /// <returns>The lease, or null.</returns>
    internal static async Task<LeaseReply?> LeaseOnceAsync(Farm farm, ILogger logger, LeaseRequest request, ServerCallContext context)
    {
        var leased = await farm.Store.LeaseAsync(Ask(farm, request), CancellationToken.None).ConfigureAwait(false);
        return leased is null ? null : await HandOverAsync(farm, logger, request, leased, context).ConfigureAwait(false);
    }

    /// <summary>Completes a committed lease: takes it back if the caller has gone meanwhile, else logs its start.</summary>
    private static async Task<LeaseReply?> HandOverAsync(Farm farm, ILogger logger, LeaseRequest request, Store.Leased leased, ServerCallContext context)
    {
        if (context.CancellationToken.IsCancellationRequested)
        {
            // The agent gave up on this call (it is stopping): the reply would be lost, so the lease is taken back.
            await farm.Store.UnleaseAsync(leased.JobSeq, leased.TaskIndex, leased.Reply.Lease, CancellationToken.None).ConfigureAwait(false);
            farm.SignalWork();
            return null;
        }

        leased.Reply.HeartbeatMs = (long)farm.Options.Heartbeat.TotalMilliseconds;
        Log.TaskLeased(logger, leased.Reply.JobId, leased.Reply.TaskId, request.Agent, leased.Reply.Lease, leased.Reply.Attempt);
        try
        {
            await farm.Logs.AppendEventAsync(leased.JobSeq, leased.TaskIndex, leased.Reply.TaskId,
                $"attempt {leased.Reply.Attempt} started on {request.Agent}", CancellationToken.None).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            // The lease is committed: losing one log line beats an agent that never hears of its task.
            Log.LogWriteFailed(logger, leased.Reply.JobId, ex);
        }

        return leased.Reply;
    }
}

/// <summary>The content-addressed blob store, for clients and agents.</summary>
/// <param name="farm">The farm.</param>
public sealed class BlobsService(Farm farm) : Blobs.BlobsBase
{
    private const int ChunkSize = 1 << 20;

    /// <inheritdoc/>
    public override async Task<FindMissingReply> FindMissing(FindMissingRequest request, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, null).ConfigureAwait(false);
        var reply = new FindMissingReply();
        foreach (var hash in request.Hashes)
        {
            if (!ContentHash.IsValid(hash))
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"'{hash}' is not a SHA-256 hash (64 lowercase hexadecimal characters)"));
            }
        }

        // A blob reported present is marked as just seen: the collector keeps it while the caller stages it.
        var now = farm.Time.GetUtcNow().UtcDateTime;
        await farm.BlobGate.WaitAsync(context.CancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var hash in request.Hashes)
            {
                if (farm.Blobs.Contains(hash))
                {
                    TryTouch(farm.Blobs.GetPath(hash), now);
                }
                else
                {
                    reply.Missing.Add(hash);
                }
            }
        }
        finally
        {
            farm.BlobGate.Release();
        }

        return reply;
    }

    /// <inheritdoc/>
    public override async Task<Empty> Upload(IAsyncStreamReader<BlobChunk> requestStream, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, null).ConfigureAwait(false);
        if (!await requestStream.MoveNext(context.CancellationToken).ConfigureAwait(false))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "An upload needs at least one chunk naming the hash."));
        }

        var hash = requestStream.Current.Hash;
        if (!ContentHash.IsValid(hash))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"'{hash}' is not a SHA-256 hash (64 lowercase hexadecimal characters)"));
        }

        var stream = new BlobChunkStream(requestStream, requestStream.Current.Data.Memory, context.CancellationToken);
        try
        {
            await farm.Blobs.AddStreamAsync(stream, hash, context.CancellationToken).ConfigureAwait(false);
        }
        catch (InvalidDataException ex)
        {
            throw new RpcException(new Status(StatusCode.DataLoss, ex.Message));
        }

        return new Empty();
    }

    /// <inheritdoc/>
    public override async Task Download(DownloadRequest request, IServerStreamWriter<BlobChunk> responseStream, ServerCallContext context)
    {
        await farm.AuthenticateAsync(context, null).ConfigureAwait(false);
        if (!farm.Blobs.Contains(request.Hash))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"No blob '{request.Hash}'."));
        }

        var file = new FileStream(farm.Blobs.GetPath(request.Hash), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
        await using (file.ConfigureAwait(false))
        {
            var buffer = new byte[ChunkSize];
            var first = true;
            int read;
            while ((read = await file.ReadAsync(buffer, context.CancellationToken).ConfigureAwait(false)) > 0 || first)
            {
                await responseStream.WriteAsync(new BlobChunk { Hash = first ? request.Hash : string.Empty, Data = ByteString.CopyFrom(buffer, 0, read) },
                    context.CancellationToken).ConfigureAwait(false);
                first = false;
                if (read == 0)
                {
                    break;
                }
            }
        }
    }

    private static void TryTouch(string path, DateTime now)
    {
        try
        {
            File.SetLastWriteTimeUtc(path, now);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
