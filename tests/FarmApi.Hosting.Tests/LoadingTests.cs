using System.Runtime.Loader;
using Microsoft.Extensions.Logging;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;
using Xunit;

namespace FarmApi.Hosting.Tests;

/// <summary>Real plug-in assemblies on real resources paths: what a user sees for each good and broken one.</summary>
public sealed class LoadingTests : HostingTestBase
{
    [Fact]
    public async Task GoodPlugin_IsListedFromMetadataOnly_ThenLoadsInItsOwnContext_AndRunsAJob()
    {
        var resources = NewResources();
        var path = resources.Add("GoodFarm");
        var manager = NewManager(resources);

        var info = Assert.Single(manager.GetPlugins());

        Assert.Equal(("Good Farm", "2.0", FarmPluginStatus.Available, path), (info.Name, info.ApiVersion, info.Status, info.AssemblyPath));
        Assert.Equal("GoodFarm.GoodFarmPlugin", info.TypeName);
        Assert.Equal("A fixture plug-in that works", info.Description);
        Assert.Equal(FarmApiInfo.ApiMajorVersion, info.FarmApiVersion!.Major);
        Assert.Equal(resources.Path, info.ResourcesPath);
        Assert.Null(info.Error);
        Assert.Empty(manager.Diagnostics);
        Assert.False(IsLoadedAnywhere(path), "listing must not load the plug-in assembly");

        var plugin = await LoadAsync(manager, "good FARM"); // names are case-insensitive

        Assert.Equal("Good Farm", plugin.Name);
        Assert.True(plugin.IsInitialized);
        var context = AssemblyLoadContext.GetLoadContext(plugin.GetType().Assembly);
        Assert.NotSame(AssemblyLoadContext.Default, context);
        Assert.Same(typeof(BaseFarmPlugin).Assembly, plugin.GetType().BaseType!.BaseType!.Assembly); // FarmApi is shared
        var job = await SubmitOneTaskJobAsync(plugin);
        Assert.Equal(JobState.Completed, job.State);
        Assert.Equal(path, job.Properties!["AssemblyPath"]);
    }

    [Fact]
    public async Task PluginCarryingItsOwnJsonNet_UsesItsCopy_WhileTheHostUsesItsOwn()
    {
        var resources = NewResources();
        resources.Add("BundledJsonFarm");
        var manager = NewManager(resources);

        var plugin = await LoadAsync(manager, "Bundled Json Farm");
        var job = await SubmitOneTaskJobAsync(plugin);

        // The plug-in ran on Json.NET 12 from its own folder...
        Assert.Equal("12.0.0.0", job.Properties!["JsonNetVersion"]);
        Assert.Equal(resources.PluginFolder("BundledJsonFarm"), Path.GetDirectoryName(job.Properties["JsonNetPath"]));
        Assert.Equal("one task", JObject.Parse(job.Properties["RequestJson"])["Name"]!.Value<string>());
        // ...and the host still runs on its Json.NET 13.
        Assert.Equal(13, typeof(JsonConvert).Assembly.GetName().Version!.Major);
        Assert.Equal("{\"host\":true}", JsonConvert.SerializeObject(new { host = true }));
    }

    [Fact]
    public async Task PluginForApiMajor1_IsIncompatible_WithBothVersionsInTheReason()
    {
        var resources = NewResources();
        var path = resources.Add("ApiOneFarm");
        var manager = NewManager(resources);

        var info = Assert.Single(manager.GetPlugins());

        Assert.Equal(FarmPluginStatus.Incompatible, info.Status);
        Assert.Equal("written for plug-in API 1.0; this host implements 2.0", info.Error);
        var diagnostic = Assert.Single(manager.Diagnostics);
        Assert.Equal((path, "Api One Farm"), (diagnostic.Path, diagnostic.PluginName));
        Assert.Contains(Logs.Collector.GetSnapshot(), r => r.Level == LogLevel.Warning && r.Message.Contains(path, StringComparison.Ordinal));
        var refused = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Api One Farm"));
        Assert.Equal(path, refused.Path);
        Assert.Contains("API 1.0", refused.Message);
    }

    [Fact]
    public async Task PluginBuiltAgainstFarmApi3_IsIncompatible_EvenWithoutAnApiVersionInItsAttribute()
    {
        var resources = NewResources();
        var path = resources.Add("FutureFarm");
        var manager = NewManager(resources);

        var info = Assert.Single(manager.GetPlugins());

        Assert.Equal(FarmPluginStatus.Incompatible, info.Status);
        Assert.Equal(new Version(3, 0, 0, 0), info.FarmApiVersion);
        Assert.Equal($"built against FarmApi 3.0.0; this host has FarmApi {typeof(BaseFarmPlugin).Assembly.GetName().Version!.ToString(3)}", info.Error);
        Assert.Equal(path, Assert.Single(manager.Diagnostics).Path);
        await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Future Farm"));
    }

    [Fact]
    public async Task PluginBuiltAgainstALaterFarmApiOfThisMajor_IsIncompatible_WithAReasonNamingBothVersions()
    {
        var resources = NewResources();
        var path = resources.Add("NewerFarm");
        var manager = NewManager(resources);
        var host = typeof(BaseFarmPlugin).Assembly.GetName().Version!;
        Assert.True(host < new Version(2, 99), "this test needs a host FarmApi older than the fixture's 2.99.0");

        var info = Assert.Single(manager.GetPlugins());

        Assert.Equal(FarmPluginStatus.Incompatible, info.Status);
        Assert.Equal(new Version(2, 99, 0, 0), info.FarmApiVersion);
        Assert.Equal($"built against FarmApi 2.99.0, newer than this host's FarmApi {host.ToString(3)}: update the host, or use a build of the plug-in for FarmApi {host.ToString(2)}", info.Error);
        Assert.Equal(path, Assert.Single(manager.Diagnostics).Path);
        var refused = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Newer Farm"));
        Assert.Contains("newer than this host's FarmApi", refused.Message);
    }

    [Fact]
    public async Task ThrowingConstructor_IsListed_LoadingReportsTheConstructorsMessage_AndTheHostGoesOn()
    {
        var resources = NewResources();
        var path = resources.Add("ThrowingFarm");
        resources.Add("GoodFarm");
        var manager = NewManager(resources);

        // Metadata cannot tell: the plug-in is listed, and `farm plugins --load` is what finds out.
        Assert.Equal(FarmPluginStatus.Available, manager.Find("Throwing Farm")!.Status);

        var failure = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Throwing Farm"));

        Assert.Equal(path, failure.Path);
        Assert.Equal("the constructor of 'ThrowingFarm.ThrowingFarmPlugin' threw InvalidOperationException: no licence server configured for Throwing Farm",
            failure.Reason);
        Assert.Equal($"Cannot load the plug-in at {path}: {failure.Reason}", failure.Message);
        Assert.IsType<InvalidOperationException>(failure.InnerException);
        var good = await LoadAsync(manager, "Good Farm");
        Assert.Equal(JobState.Completed, (await SubmitOneTaskJobAsync(good)).State);
    }

    [Fact]
    public async Task InitializerThatThrows_FailsTheLoadWithItsReason_WithoutTheSecret()
    {
        var resources = NewResources();
        var path = resources.Add("GoodFarm");
        var manager = NewManager(resources);
        const string token = "tok-5e1f0c77a9";
        var overrides = new Dictionary<string, string> { ["ApiUrl"] = "https://farm.example", ["ApiToken"] = token, ["FailInitialize"] = "expired" };

        var failure = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Good Farm", overrides));

        Assert.Equal(path, failure.Path);
        Assert.Equal("plug-in 'Good Farm' failed to initialize: Good Farm: initialization failed: https://farm.example refused token ***: expired", failure.Reason);
        Assert.DoesNotContain(token, failure.ToString());
        Assert.DoesNotContain(Logs.Collector.GetSnapshot(), r => r.Message.Contains(token, StringComparison.Ordinal));
        Assert.NotNull(await LoadAsync(manager, "Good Farm")); // the same plug-in, without the failing setting
    }

    [Fact]
    public async Task FileNamedLikeAnAssembly_ThatIsNot_IsBroken_AndTheOthersStillLoad()
    {
        var resources = NewResources();
        var path = resources.Write("Plugins/X/X.dll", "this is not a .NET assembly\n");
        resources.Add("GoodFarm");
        var manager = NewManager(resources);

        var broken = Assert.Single(manager.GetPlugins(), p => p.AssemblyPath == path);

        Assert.Equal(("X", FarmPluginStatus.Broken, "not a .NET assembly"), (broken.Name, broken.Status, broken.Error));
        Assert.Equal(path, Assert.Single(manager.Diagnostics).Path);
        Assert.NotNull(await LoadAsync(manager, "Good Farm"));
    }

    [Fact]
    public async Task SameNameOnTwoResourcesPaths_TheFirstWins_TheSecondIsReported()
    {
        var first = NewResources();
        var second = NewResources();
        var firstPath = first.Add("GoodFarm");
        var secondPath = second.Add("GoodFarm");
        var manager = NewManager(first, second);

        var plugins = manager.GetPlugins();

        Assert.Equal([firstPath, secondPath], plugins.Select(p => p.AssemblyPath));
        Assert.Equal([FarmPluginStatus.Available, FarmPluginStatus.Duplicate], plugins.Select(p => p.Status));
        Assert.Equal($"plug-in 'Good Farm' is already provided by {firstPath}, which comes first on the resources paths", plugins[1].Error);
        Assert.Equal(secondPath, Assert.Single(manager.Diagnostics).Path);
        var plugin = await LoadAsync(manager, "Good Farm");
        Assert.Equal(firstPath, (await SubmitOneTaskJobAsync(plugin)).Properties!["AssemblyPath"]);
    }

    [Fact]
    public void FarmResources_ComesBeforeTheHostsOwnPaths()
    {
        var hosts = NewResources();
        var fromEnvironment = NewResources();
        hosts.Add("GoodFarm");
        var winner = fromEnvironment.Add("GoodFarm");
        Environment["FARM_RESOURCES"] = fromEnvironment.Path + Path.PathSeparator + "/nonexistent/resources";
        var manager = NewManager(hosts);

        Assert.Equal([fromEnvironment.Path, "/nonexistent/resources", hosts.Path], manager.ResourcePaths);
        Assert.Equal(winner, manager.Find("Good Farm")!.AssemblyPath);
    }

    [Fact]
    public async Task AbstractClassRegistered_IsBrokenInTheListing_AndSoIsAClassThatIsNoPlugin()
    {
        var resources = NewResources();
        var path = resources.Add("MisregisteredFarm");
        var manager = NewManager(resources);

        var plugins = manager.GetPlugins().ToDictionary(p => p.Name);

        Assert.Equal(FarmPluginStatus.Broken, plugins["Abstract Farm"].Status);
        Assert.Equal("'MisregisteredFarm.AbstractFarmPlugin' is abstract: register a concrete class", plugins["Abstract Farm"].Error);
        Assert.Equal(FarmPluginStatus.Broken, plugins["Not A Farm"].Status);
        Assert.Equal("'MisregisteredFarm.NotAFarmPlugin' does not derive from FarmApi.BaseFarmPlugin", plugins["Not A Farm"].Error);
        Assert.All(manager.Diagnostics, d => Assert.Equal(path, d.Path));
        Assert.Equal(2, manager.Diagnostics.Count);
        var refused = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Abstract Farm"));
        Assert.Contains("is abstract", refused.Message);
        Assert.False(IsLoadedAnywhere(path));
    }

    [Fact]
    public async Task MissingDependency_IsBrokenInTheListing_NamingTheAssembly()
    {
        var resources = NewResources();
        var path = resources.Add("MissingDependencyFarm", except: "FarmHelpers.dll");
        var manager = NewManager(resources);

        var info = Assert.Single(manager.GetPlugins());

        Assert.Equal(FarmPluginStatus.Broken, info.Status);
        Assert.Equal($"missing dependency FarmHelpers 1.4.0.0 (not in {resources.PluginFolder("MissingDependencyFarm")})", info.Error);
        Assert.Equal(path, Assert.Single(manager.Diagnostics).Path);
        var refused = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Missing Dependency Farm"));
        Assert.Contains("FarmHelpers", refused.Message);
    }

    [Fact]
    public async Task MissingDependency_PresentAgain_Loads()
    {
        var resources = NewResources();
        resources.Add("MissingDependencyFarm");
        var manager = NewManager(resources);

        var plugin = await LoadAsync(manager, "Missing Dependency Farm");

        Assert.Equal("hello from Missing Dependency Farm", plugin.GetType().GetProperty("Greeting")!.GetValue(plugin));
    }

    [Fact]
    public async Task EveryFixtureOnOnePath_ListingNeverThrows_EachBrokenOneHasItsReason_AndTheGoodOnesRun()
    {
        var resources = NewResources();
        foreach (var fixture in new[] { "GoodFarm", "BundledJsonFarm", "ApiOneFarm", "FutureFarm", "ThrowingFarm", "MisregisteredFarm" })
        {
            resources.Add(fixture);
        }

        resources.Add("MissingDependencyFarm", except: "FarmHelpers.dll");
        resources.Write("Plugins/X/X.dll", "MZ but not really");
        Directory.CreateDirectory(resources.PluginFolder("Empty"));
        var manager = NewManager(resources);

        var byName = manager.GetPlugins().ToDictionary(p => p.Name, p => p.Status);

        Assert.Equal(new Dictionary<string, FarmPluginStatus>
        {
            ["Api One Farm"] = FarmPluginStatus.Incompatible,
            ["Bundled Json Farm"] = FarmPluginStatus.Available,
            ["Future Farm"] = FarmPluginStatus.Incompatible,
            ["Good Farm"] = FarmPluginStatus.Available,
            ["Abstract Farm"] = FarmPluginStatus.Broken,
            ["Not A Farm"] = FarmPluginStatus.Broken,
            ["Missing Dependency Farm"] = FarmPluginStatus.Broken,
            ["Throwing Farm"] = FarmPluginStatus.Available,
            ["X"] = FarmPluginStatus.Broken,
        }, byName);
        Assert.Contains(manager.Diagnostics, d => d.Path == resources.PluginFolder("Empty") && d.Reason.Contains("no Empty.dll", StringComparison.Ordinal));
        Assert.Equal(7, manager.Diagnostics.Count); // six broken or incompatible plug-ins and the empty folder
        Assert.All(manager.Diagnostics, d => Assert.False(string.IsNullOrWhiteSpace(d.Reason)));

        // `farm plugins --load`: every available one is constructed; one fails, the others run.
        var outcomes = new Dictionary<string, string>();
        foreach (var info in manager.GetPlugins().Where(p => p.Status == FarmPluginStatus.Available))
        {
            try
            {
                var plugin = await LoadAsync(manager, info.Name);
                outcomes[info.Name] = (await SubmitOneTaskJobAsync(plugin)).State.ToString();
            }
            catch (FarmPluginLoadException ex)
            {
                outcomes[info.Name] = "load failed: " + ex.Reason;
            }
        }

        Assert.Equal("Completed", outcomes["Good Farm"]);
        Assert.Equal("Completed", outcomes["Bundled Json Farm"]);
        Assert.StartsWith("load failed: the constructor of", outcomes["Throwing Farm"]);
    }

    [Fact]
    public async Task UnknownName_SaysWhichPluginsThereAre()
    {
        var resources = NewResources();
        resources.Add("GoodFarm");
        resources.Add("BundledJsonFarm");
        var manager = NewManager(resources);

        var unknown = await Assert.ThrowsAsync<FarmPluginException>(() => manager.LoadAsync("Nope"));

        Assert.IsNotType<FarmPluginLoadException>(unknown);
        Assert.Equal("Unknown plug-in 'Nope': available: Bundled Json Farm, Good Farm.", unknown.Message);
    }

    [Fact]
    public async Task NoResourcesPath_SaysToSetFarmResources()
    {
        var manager = NewManager();

        Assert.Empty(manager.GetPlugins());
        var unknown = await Assert.ThrowsAsync<FarmPluginException>(() => manager.LoadAsync("Good Farm"));
        Assert.Contains("set FARM_RESOURCES", unknown.Message);
    }
}
