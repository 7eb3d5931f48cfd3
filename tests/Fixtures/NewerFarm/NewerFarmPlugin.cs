using FarmApi;

[assembly: FarmPlugin(typeof(NewerFarm.NewerFarmPlugin), "Newer Farm", ApiVersion = "2.0")]

namespace NewerFarm;

/// <summary>A plug-in built against a later FarmApi of this major.</summary>
public sealed class NewerFarmPlugin : BaseFarmPlugin
{
    public override Task<string> SubmitAsync(ReadOnlyMemory<byte> job, CancellationToken cancellationToken) => AMethodAddedLaterAsync();
}
