namespace ReferenceFarm.Server;

/// <summary>Requeues tasks whose lease lapsed (the agent stopped heartbeating); a lapsed lease counts as an attempt.</summary>
/// <param name="farm">The farm.</param>
/// <param name="logger">The logger.</param>
public sealed class LeaseReaper(Farm farm, ILogger<LeaseReaper> logger) : BackgroundService
{
    /// <inheritdoc/>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Agents cannot renew a lease before the server listens again: nothing lapses before that (and the restart grace).
        await farm.Listening.Task.WaitAsync(stoppingToken).ConfigureAwait(false);
        using var timer = new PeriodicTimer(farm.Options.LeaseCheckInterval, farm.Time);
        var lastCheck = farm.Time.GetTimestamp();
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                // A server that could not run for a while (paused, starved of CPU) could not process heartbeats either: it does
                // not blame the agents for that, and gives every running lease the restart grace first.
                var gap = farm.Time.GetElapsedTime(lastCheck);
                if (gap > farm.Options.LeaseCheckInterval + farm.Options.Heartbeat)
                {
                    var extended = await farm.Store.ExtendRunningLeasesAsync(farm.Options.RestartGrace, stoppingToken).ConfigureAwait(false);
                    if (extended > 0)
                    {
                        Log.StallGrace(logger, (long)gap.TotalMilliseconds, extended);
                    }
                }

                var lapsed = await farm.Store.ReapLapsedAsync(async task =>
                {
                    var now = task.NewState == 0 ? "queued again" : "failed (no attempts left)";
                    Log.LeaseLapsed(logger, task.JobId, task.TaskId, task.Agent, now);
                    await farm.Logs.AppendEventAsync(task.JobSeq, task.TaskIndex, task.TaskId, $"lease lapsed on {task.Agent} (no heartbeat); {now}",
                        CancellationToken.None).ConfigureAwait(false);
                }, stoppingToken).ConfigureAwait(false);
                if (lapsed.Count > 0)
                {
                    farm.SignalWork();
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ReaperFailed(logger, ex);
            }

            lastCheck = farm.Time.GetTimestamp();
        }
    }
}
