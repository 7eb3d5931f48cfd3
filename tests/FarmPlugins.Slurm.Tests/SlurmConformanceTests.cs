using FarmApi;
using FarmApi.Testing;
using Xunit;

namespace FarmPlugins.Slurm.Tests;

/// <summary>The FarmApi conformance kit against the Slurm adapter and the private single-node cluster.</summary>
[Collection(SlurmCollection.Name)]
public sealed class SlurmConformanceTests(SlurmFixture fixture) : FarmConformanceTests
{
    protected override TimeSpan JobTimeout => TimeSpan.FromSeconds(60);

    protected override TimeSpan PollInterval => TimeSpan.FromMilliseconds(100);

    protected override async Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken) =>
        await fixture.NewPluginAsync(cancellationToken: cancellationToken);
}
