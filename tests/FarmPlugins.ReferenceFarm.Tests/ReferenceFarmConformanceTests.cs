using FarmApi;
using FarmApi.Testing;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary>One real server and one agent on 127.0.0.1, shared by the kit's checks (each check makes its own adapters).</summary>
public sealed class ConformanceClusterFixture : IAsyncLifetime
{
    public FarmCluster Cluster { get; } = new();

    public async Task InitializeAsync()
    {
        // The kit never tests lapsed leases, and runs one attempt per task: a long lease keeps a starved machine from failing a check.
        Cluster.ServerTimings = ["--lease-ms", "15000", "--heartbeat-ms", "300", "--lease-check-ms", "200"];
        await Cluster.StartServerAsync();
        Cluster.StartAgent("conformance", "command", "--slots", "2");
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>The ReferenceFarm adapter against the conformance kit: real server and agent processes, short leases and polls.</summary>
public sealed class ReferenceFarmConformanceTests(ConformanceClusterFixture fixture) : FarmConformanceTests, IClassFixture<ConformanceClusterFixture>
{
    protected override TimeSpan JobTimeout => TimeSpan.FromSeconds(60);

    protected override TimeSpan PollInterval => TimeSpan.FromMilliseconds(100);

    protected override Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken) =>
        fixture.Cluster.CreatePluginAsync(track: false, cancellationToken: cancellationToken);
}
