using FarmApi;
using FarmApi.Testing;

namespace FarmPlugins.LocalQueue.Tests;

/// <summary>LocalQueue against the conformance kit: a private data directory, short leases and polls.</summary>
public sealed class LocalQueueConformanceTests : FarmConformanceTests
{
    private readonly LocalQueueFarm _farm = new();

    protected override Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken) =>
        _farm.NewPluginAsync(cancellationToken);

    protected override TimeSpan JobTimeout => TimeSpan.FromSeconds(90);

    protected override async Task DisposeFarmAsync() => await _farm.DisposeAsync();
}
