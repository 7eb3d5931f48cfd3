
namespace ReferenceFarm.Server;

/// <summary>Requeues tasks whose lease lapsed (the agent stopped heartbeating); a lapsed lease counts as an attempt.</summary>
/// <param name="farm">The farm.</param>
/// <param name="logger">The logger.</param>
public sealed class LeaseReaper(Farm farm, ILogger<LeaseReaper> logger) : BackgroundService
{
    /// <inheritdoc/>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(farm.Options.LeaseCheckInterval, farm.Time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                var lapsed = await farm.Store.ReapLapsedAsync(stoppingToken).ConfigureAwait(false);
                foreach (var (jobId, taskId, agent, state, seq, index) in lapsed)
                {
                    var now = state == 0 ? "queued again" : "failed (no attempts left)";
                    Log.LeaseLapsed(logger, jobId, taskId, agent, now);
                    await farm.Logs.AppendEventAsync(seq, index, taskId, $"lease lapsed on {agent} (no heartbeat); {now}", stoppingToken).ConfigureAwait(false);
                }

                if (lapsed.Count > 0)
                {
                    farm.SignalWork();
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.ReaperFailed(logger, ex);
            }
        }
    }
}
