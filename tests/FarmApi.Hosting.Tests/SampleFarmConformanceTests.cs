using FarmApi.Testing;
using FarmPlugins.TestSupport;

namespace FarmApi.Hosting.Tests;

/// <summary>
/// The sample adapter against the conformance kit, loaded the way a host loads it: its build output on a temporary
/// resources path, a new instance from <see cref="FarmPluginManager.LoadAsync"/> for every call. It has no stop or
/// restart, so the kit skips those checks.
/// </summary>
public sealed class SampleFarmConformanceTests : FarmConformanceTests
{
    private readonly ResourcesPath _resources = new();
    private readonly TempDir _data = new("sample-farm-data");
    private FarmPluginManager? _manager;

    protected override TimeSpan JobTimeout => TimeSpan.FromSeconds(90);

    protected override Task InitializeFarmAsync()
    {
        _resources.Add("SampleFarm");
        var options = new FarmPluginManagerOptions { Environment = new Dictionary<string, string> { ["FARM_DATA"] = _data.Path } };
        options.ResourcePaths.Add(_resources.Path);
        _manager = new FarmPluginManager(options);
        return Task.CompletedTask;
    }

    protected override async Task<BaseFarmPlugin> CreatePluginAsync(CancellationToken cancellationToken) =>
        await _manager!.LoadAsync("Sample Farm", cancellationToken: cancellationToken);

    protected override async Task DisposeFarmAsync()
    {
        if (_manager is not null)
        {
            await _manager.DisposeAsync();
        }

        _resources.Dispose();
        _data.Dispose();
    }
}
