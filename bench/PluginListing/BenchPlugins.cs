using System.Reflection;
using System.Reflection.Emit;
using FarmApi;

namespace FarmPlugins.Bench.PluginListing;

/// <summary>
/// Writes plug-in assemblies to disk (PersistedAssemblyBuilder): each a real, loadable <see cref="BaseFarmPlugin"/>
/// subclass registered with <see cref="FarmPluginAttribute"/> under its own name, every required hook throwing.
/// </summary>
internal static class BenchPlugins
{
    public static void Write(string resourcesPath, int count)
    {
        for (var i = 1; i <= count; i++)
        {
            var assemblyName = $"BenchFarm{i:00}";
            var folder = Path.Combine(resourcesPath, "Plugins", assemblyName);
            Directory.CreateDirectory(folder);
            var builder = new PersistedAssemblyBuilder(new AssemblyName(assemblyName) { Version = new Version(1, 0, 0, 0) }, typeof(object).Assembly);
            var module = builder.DefineDynamicModule(assemblyName);
            var type = module.DefineType($"{assemblyName}.{assemblyName}Plugin", TypeAttributes.Public | TypeAttributes.Sealed | TypeAttributes.Class,
                typeof(BaseFarmPlugin));
            type.DefineDefaultConstructor(MethodAttributes.Public);
            foreach (var hook in typeof(BaseFarmPlugin).GetMethods(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public).Where(m => m.IsAbstract))
            {
                var method = type.DefineMethod(hook.Name, MethodAttributes.Family | MethodAttributes.Virtual | MethodAttributes.HideBySig,
                    hook.ReturnType, hook.GetParameters().Select(p => p.ParameterType).ToArray());
                var il = method.GetILGenerator();
                il.Emit(OpCodes.Ldstr, "a bench plug-in lists, it does not run");
                il.Emit(OpCodes.Newobj, typeof(NotSupportedException).GetConstructor([typeof(string)])!);
                il.Emit(OpCodes.Throw);
                type.DefineMethodOverride(method, hook);
            }

            var plugin = type.CreateType();
            builder.SetCustomAttribute(new CustomAttributeBuilder(
                typeof(FarmPluginAttribute).GetConstructor([typeof(Type), typeof(string)])!, [plugin, $"Bench Farm {i:00}"],
                [typeof(FarmPluginAttribute).GetProperty(nameof(FarmPluginAttribute.ApiVersion))!,
                 typeof(FarmPluginAttribute).GetProperty(nameof(FarmPluginAttribute.Description))!],
                [FarmApiInfo.ApiVersion, $"Generated plug-in {i} of {count}"]));
            builder.Save(Path.Combine(folder, assemblyName + ".dll"));
        }
    }
}
