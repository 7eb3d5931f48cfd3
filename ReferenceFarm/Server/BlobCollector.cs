namespace ReferenceFarm.Server;

/// <summary>
/// Removes blobs no job, output or staged file refers to any more: those of a deleted job at once, and everything else
/// in a periodic sweep. A blob stays at least <see cref="ServerOptions.BlobGrace"/> after it was uploaded or last reported
/// present, so a client between "which blobs are missing?" and staging them never loses one.
/// </summary>
/// <param name="farm">The farm.</param>
/// <param name="logger">The logger.</param>
public sealed class BlobCollector(Farm farm, ILogger<BlobCollector> logger) : BackgroundService
{
    /// <inheritdoc/>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(farm.Options.BlobSweepInterval, farm.Time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                await SweepAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.BlobCollectionFailed(logger, ex);
            }
        }
    }

    /// <summary>Removes those of <paramref name="candidates"/> that nothing refers to any more (after a job was deleted).</summary>
    /// <param name="candidates">The deleted job's blobs.</param>
    /// <param name="cancellationToken">Cancels the work.</param>
    /// <returns>How many blobs were removed.</returns>
    public async Task<int> CollectAsync(IReadOnlyCollection<string> candidates, CancellationToken cancellationToken = default)
    {
        if (candidates.Count == 0)
        {
            return 0;
        }

        var unreferenced = await farm.Store.FindUnreferencedAsync(candidates, cancellationToken).ConfigureAwait(false);
        return await RemoveAsync(unreferenced.Select(farm.Blobs.GetPath), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Removes every blob nothing refers to, and uploads that never finished.</summary>
    /// <param name="cancellationToken">Cancels the work.</param>
    /// <returns>How many files were removed.</returns>
    public async Task<int> SweepAsync(CancellationToken cancellationToken = default)
    {
        var referenced = await farm.Store.ReferencedBlobsAsync(cancellationToken).ConfigureAwait(false);
        var unreferenced = Directory.EnumerateFiles(farm.Blobs.Root, "*", SearchOption.AllDirectories)
            .Where(path => Path.GetFileName(path) is var name && (name.StartsWith("incoming-", StringComparison.Ordinal)
                || (FarmApi.Hashing.ContentHash.IsValid(name) && !referenced.Contains(name))))
            .ToList();
        return await RemoveAsync(unreferenced, cancellationToken).ConfigureAwait(false);
    }

    private async Task<int> RemoveAsync(IEnumerable<string> paths, CancellationToken cancellationToken)
    {
        var removed = 0;
        long bytes = 0;
        await farm.BlobGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var cutoff = farm.Time.GetUtcNow().UtcDateTime - farm.Options.BlobGrace;
            foreach (var path in paths)
            {
                var file = new FileInfo(path);
                if (!file.Exists || file.LastWriteTimeUtc > cutoff)
                {
                    continue;
                }

                try
                {
                    var length = file.Length;
                    file.Delete();
                    removed++;
                    bytes += length;
                }
                catch (IOException)
                {
                    // In use or gone meanwhile: the next sweep tries again.
                }
            }
        }
        finally
        {
            farm.BlobGate.Release();
        }

        if (removed > 0)
        {
            Log.BlobsRemoved(logger, removed, bytes);
        }

        return removed;
    }
}
