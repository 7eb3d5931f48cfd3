using Xunit;

namespace FarmApi.Hosting.Tests;

/// <summary>Where a plug-in's settings come from, in which order, and where its data directory is.</summary>
public sealed class SettingsTests : HostingTestBase
{
    [Fact]
    public async Task Settings_Merge_PluginFolder_ThenResourcesPathsFirstWins_ThenEnvironment_ThenOverrides()
    {
        var first = NewResources();
        var second = NewResources();
        first.Add("GoodFarm");
        var pluginFile = first.Write("Plugins/GoodFarm/settings.json", """{ "A": "folder", "B": "folder", "C": "folder", "D": "folder" }""");
        var firstFile = first.Write("Settings/Good Farm.json", """{ "A": "first", "B": "first", "C": "first" }""");
        var secondFile = second.Write("Settings/Good Farm.json", """{ "a": "second", "b": "second", "c": "second", "E": "second" }""");
        Environment["FARM_GOOD_FARM_A"] = "environment";
        Environment["FARM_GOOD_FARM_B"] = "environment";
        var manager = NewManager(first, second);
        var overrides = new Dictionary<string, string> { ["a"] = "override" };

        var plugin = await LoadAsync(manager, "Good Farm", overrides);
        var effective = (await manager.GetEffectiveSettingsAsync("Good Farm", overrides)).ToDictionary(s => s.Key, StringComparer.OrdinalIgnoreCase);

        var settings = plugin.Context.Settings;
        Assert.Equal(("override", "environment", "first", "folder", "second"), (settings["A"], settings["B"], settings["C"], settings["D"], settings["E"]));
        Assert.Equal("override", effective["A"].Source);
        Assert.Equal("FARM_GOOD_FARM_B", effective["B"].Source);
        Assert.Equal(firstFile, effective["C"].Source);
        Assert.Equal(pluginFile, effective["D"].Source);
        Assert.Equal(secondFile, effective["E"].Source);
    }

    [Fact]
    public async Task EnvironmentKeys_AreMatchedCaseInsensitively_ToTheDeclaredNames()
    {
        var resources = NewResources();
        resources.Add("GoodFarm");
        Environment["FARM_GOOD_FARM_APIURL"] = "https://farm.example:8443";
        Environment["farm_good_farm_pool"] = "gpu";
        Environment["FARM_GOOD_FARM_EXTRA_KEY"] = "undeclared";
        Environment["FARM_GOOD_FARM_APITOKEN"] = "s3cr3t-token";
        Environment["FARM_OTHER_APIURL"] = "not ours";
        var manager = NewManager(resources);

        var plugin = await LoadAsync(manager, "Good Farm");
        var effective = await manager.GetEffectiveSettingsAsync("Good Farm");

        Assert.Equal("https://farm.example:8443", plugin.Context.Settings["ApiUrl"]);
        Assert.Equal("https://farm.example:8443", plugin.Context.Settings["apiurl"]);
        Assert.Equal("gpu", plugin.Context.GetSetting("POOL"));
        Assert.Equal("undeclared", plugin.Context.GetSetting("extra_key"));
        Assert.Equal("s3cr3t-token", plugin.Context.Settings["ApiToken"]);
        Assert.DoesNotContain(plugin.Context.Settings.Values, v => v == "not ours");
        // Declared settings keep their declared spelling; the secret is masked; where each came from is shown.
        Assert.Equal(
            [("ApiUrl", "https://farm.example:8443", "FARM_GOOD_FARM_APIURL"), ("Pool", "gpu", "farm_good_farm_pool"),
             ("ApiToken", "***", "FARM_GOOD_FARM_APITOKEN"), ("FailInitialize", "", "default"), ("EXTRA_KEY", "undeclared", "FARM_GOOD_FARM_EXTRA_KEY")],
            effective.Select(s => (s.Key, s.Value, s.Source)));
        Assert.True(effective.Single(s => s.Key == "ApiToken").IsSecret);
    }

    [Fact]
    public async Task DeclaredSettingNotSet_ShowsItsDefault()
    {
        var resources = NewResources();
        resources.Add("GoodFarm");
        var manager = NewManager(resources);

        var effective = await manager.GetEffectiveSettingsAsync("Good Farm");

        Assert.Equal([("ApiUrl", "", "default"), ("Pool", "default", "default"), ("ApiToken", "", "default"), ("FailInitialize", "", "default")],
            effective.Select(s => (s.Key, s.Value, s.Source)));
    }

    [Fact]
    public async Task UseEnvironmentFalse_IgnoresEveryVariable()
    {
        var resources = NewResources();
        resources.Add("GoodFarm");
        Environment["FARM_GOOD_FARM_POOL"] = "from-environment";
        Environment["FARM_RESOURCES"] = "/nonexistent";
        var options = new FarmPluginManagerOptions { Environment = Environment, UseEnvironment = false, ResourcePaths = { resources.Path } };
        await using var manager = new FarmPluginManager(options);

        Assert.Equal([resources.Path], manager.ResourcePaths);
        var effective = await manager.GetEffectiveSettingsAsync("Good Farm", new Dictionary<string, string> { ["Pool"] = "override" });
        Assert.Equal(("override", "override"), effective.Where(s => s.Key == "Pool").Select(s => (s.Value, s.Source)).Single());
    }

    [Fact]
    public async Task SettingsFileThatIsNotJson_FailsTheLoad_NamingTheFile()
    {
        var resources = NewResources();
        resources.Add("GoodFarm");
        var file = resources.Write("Settings/Good Farm.json", "{ not json");
        var manager = NewManager(resources);

        var failure = await Assert.ThrowsAsync<FarmPluginLoadException>(() => manager.LoadAsync("Good Farm"));

        Assert.Contains($"Settings file {file} is not valid JSON", failure.Message);
    }

    [Theory]
    [InlineData("FARM_DATA", "{farm}/Good_Farm")]
    [InlineData("FARM_DATA,XDG_DATA_HOME", "{farm}/Good_Farm")]
    [InlineData("XDG_DATA_HOME", "{xdg}/farmplugins/Good_Farm")]
    [InlineData("HOME", "{home}/.local/share/farmplugins/Good_Farm")]
    [InlineData("XDG_DATA_HOME,HOME", "{xdg}/farmplugins/Good_Farm")]
    public async Task DataDirectory_FarmData_ThenXdgDataHome_ThenHome(string set, string expected)
    {
        var root = Data.Path;
        var values = new Dictionary<string, string>
        {
            ["FARM_DATA"] = Path.Combine(root, "farm"),
            ["XDG_DATA_HOME"] = Path.Combine(root, "xdg"),
            ["HOME"] = Path.Combine(root, "home"),
        };
        Environment.Clear();
        foreach (var name in set.Split(','))
        {
            Environment[name] = values[name];
        }

        var resources = NewResources();
        resources.Add("GoodFarm");
        var manager = NewManager(resources);
        var folder = expected.Replace("{farm}", values["FARM_DATA"]).Replace("{xdg}", values["XDG_DATA_HOME"]).Replace("{home}", values["HOME"]);

        Assert.Equal(folder, manager.GetDataDirectory("Good Farm"));
        Assert.False(Directory.Exists(folder), "asking is not creating");
        var plugin = await LoadAsync(manager, "Good Farm");
        Assert.Equal(folder, plugin.Context.DataDirectory);
        Assert.True(Directory.Exists(folder), "loading creates it");
    }

    [Theory]
    [InlineData("Good Farm", "FARM_GOOD_FARM_")]
    [InlineData("qarnot", "FARM_QARNOT_")]
    [InlineData("Réseau-1.x", "FARM_R_SEAU_1_X_")]
    public void EnvironmentPrefix_UpperCasesTheName_AndTurnsEveryOtherCharacterIntoAnUnderscore(string name, string prefix) =>
        Assert.Equal(prefix, FarmPluginManager.EnvironmentPrefix(name));

    [Theory]
    [InlineData("../../etc", "_.._etc")]
    [InlineData("a/b", "a_b")]
    [InlineData("...", "plugin")]
    public void DataDirectory_NameNeverClimbsOut(string name, string folder)
    {
        Environment["FARM_DATA"] = Data.Path;
        var manager = NewManager();

        Assert.Equal(Path.Combine(Data.Path, folder), manager.GetDataDirectory(name));
    }
}
