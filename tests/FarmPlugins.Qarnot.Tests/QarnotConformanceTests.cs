using FarmApi;
using FarmApi.Testing;
using Xunit;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>The FarmApi conformance kit against the Qarnot adapter, the emulator and the real S3 server.</summary>
[Collection(QarnotCollection.Name)]
public sealed class QarnotConformanceTests(QarnotFixture fixture) : FarmConformanceTests
{
    protected override TimeSpan JobTimeout => TimeSpan.FromSeconds(60);

    protected override TimeSpan PollInterval => TimeSpan.FromMilliseconds(100);

    protected override async Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken) =>
        await fixture.NewPluginAsync(cancellationToken: cancellationToken);
}
