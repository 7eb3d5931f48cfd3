using FarmApi;
using FarmPlugins.Fixtures;

[assembly: FarmPlugin(typeof(GoodFarm.GoodFarmPlugin), "Good Farm", ApiVersion = "2.0", Description = "A fixture plug-in that works")]

namespace GoodFarm;

/// <summary>A working plug-in with declared settings, one of them secret.</summary>
public sealed class GoodFarmPlugin : InMemoryFarm
{
    protected override IReadOnlyList<SettingDescriptor> DescribeSettingsCore() =>
    [
        new("ApiUrl", "Where the farm listens."),
        new("Pool", "The pool jobs go to.", DefaultValue: "default"),
        new("ApiToken", "The farm's access token.", IsSecret: true),
        new("FailInitialize", "When set, initialization fails with this reason (and, carelessly, the token)."),
    ];

    protected override ValueTask InitializeCoreAsync(CancellationToken cancellationToken)
    {
        var reason = Context.GetSetting("FailInitialize");
        return reason is null
            ? ValueTask.CompletedTask
            : throw new InvalidOperationException($"{Context.GetSetting("ApiUrl")} refused token {Context.GetSetting("ApiToken")}: {reason}");
    }
}
