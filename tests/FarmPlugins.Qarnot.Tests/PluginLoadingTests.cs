using FarmApi;
using FarmApi.Hosting;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>The published plug-in (out/resources/Plugins/FarmPlugins.Qarnot) as a host loads it: its own load context, AWSSDK inside.</summary>
[Collection(QarnotCollection.Name)]
public sealed class PluginLoadingTests(QarnotFixture fixture) : IDisposable
{
    private readonly TempDir _dir = new("qarnot-load");

    public void Dispose() => _dir.Dispose();

    [ComponentFact(Components.S3)]
    public async Task PublishedPlugin_LoadsByName_HidesItsToken_AndPassesItsTest()
    {
        var options = new FarmPluginManagerOptions
        {
            // Its own environment: FARM_DATA and the token as FARM_QARNOT_TOKEN, nothing from this process.
            Environment = new Dictionary<string, string> { ["FARM_DATA"] = _dir.Path, ["FARM_QARNOT_TOKEN"] = fixture.Token },
        };
        options.ResourcePaths.Add(Path.Combine(QarnotFixture.RepoRoot, "out", "resources"));
        await using var manager = new FarmPluginManager(options);
        var overrides = new Dictionary<string, string>(fixture.Settings(), StringComparer.OrdinalIgnoreCase);
        overrides.Remove("Token");

        var info = manager.Find("qarnot");
        Assert.NotNull(info);
        var settings = await manager.GetEffectiveSettingsAsync("Qarnot", overrides);
        var token = settings.Single(s => s.Key.Equals("Token", StringComparison.OrdinalIgnoreCase));
        Assert.True(token.IsSecret);
        Assert.DoesNotContain(fixture.Token, string.Join(" ", settings.Select(s => s.Value)), StringComparison.Ordinal);

        await using var plugin = await manager.LoadAsync("Qarnot", overrides);
        var report = await plugin.TestAsync();

        Assert.True(report.Passed, string.Join("; ", report.Checks.Select(c => $"{c.Name}: {c.Detail}")));
        Assert.NotEqual(typeof(QarnotPlugin), plugin.GetType());
        Assert.Equal(BaseFarmPlugin.DeclaredCapabilities(typeof(QarnotPlugin)), plugin.Capabilities);
    }
}
