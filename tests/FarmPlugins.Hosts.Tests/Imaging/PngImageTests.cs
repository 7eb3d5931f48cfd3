using FarmPlugins.Hosts.Imaging;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Hosts.Tests.Imaging;

public class PngImageTests
{
    [Theory]
    [InlineData(1, 8)]
    [InlineData(2, 8)]
    [InlineData(3, 8)]
    [InlineData(4, 8)]
    [InlineData(1, 16)]
    [InlineData(3, 16)]
    [InlineData(4, 16)]
    public async Task SaveThenLoad_KeepsEverySample(int channels, int depth)
    {
        using var dir = new TempDir("png");
        var image = Pattern(13, 7, channels, depth);

        await image.SaveAsync(dir.Combine("a.png"));
        var loaded = await PngImage.LoadAsync(dir.Combine("a.png"));

        Assert.Equal((13, 7, channels, depth), (loaded.Width, loaded.Height, loaded.Channels, loaded.BitDepth));
        Assert.Equal(image.Data, loaded.Data);
        Assert.True(double.IsPositiveInfinity(ImageComparison.Psnr(image, loaded)));
    }

    [ComponentFact(Components.PovRay)]
    public async Task Load_ReadsPovRayOutput_At8And16Bits()
    {
        using var dir = new TempDir("povpng");
        dir.WriteFile("s.pov", "camera { location <0,0,-3> look_at 0 } light_source { <1,2,-3> rgb 1 } sphere { 0, 1 pigment { rgb <1,0,0> } }\n");
        foreach (var (format, depth) in new[] { ("+FN", 8), ("+FN16", 16) })
        {
            var (exit, output) = await LocalTaskRunner.RunProcessAsync("povray", ["+Is.pov", $"+Oo{depth}.png", format, "+W20", "+H10", "-D", "-P"], dir.Path);
            Assert.True(exit == 0, output);
            var image = await PngImage.LoadAsync(dir.Combine($"o{depth}.png"));
            Assert.Equal(depth, image.BitDepth);
            Assert.True(image.Get(10, 5, 0) > image.Get(10, 5, 1), "the red sphere is not red");
        }
    }

    [Fact]
    public void Decode_RefusesWhatIsNotAPng()
    {
        Assert.Contains("signature", Assert.Throws<InvalidDataException>(() => PngImage.Decode("hello world"u8)).Message);
        var bytes = Pattern(4, 4, 3, 8).Encode();
        bytes[^20] ^= 0xFF;
        Assert.Throws<InvalidDataException>(() => PngImage.Decode(bytes));
    }

    [Fact]
    public void Psnr_FallsAsNoiseGrows()
    {
        var a = Pattern(16, 16, 3, 8);
        var b = Pattern(16, 16, 3, 8);
        b.Set(3, 3, 0, (b.Get(3, 3, 0) + 10) % 256);
        var c = Pattern(16, 16, 3, 8);
        for (var x = 0; x < 16; x++)
        {
            c.Set(x, 5, 1, (c.Get(x, 5, 1) + 100) % 256);
        }

        Assert.True(ImageComparison.Psnr(a, b) > ImageComparison.Psnr(a, c));
        Assert.Equal(1, ImageComparison.CountDifferentPixels(a, b));
        Assert.Throws<ArgumentException>(() => ImageComparison.Psnr(a, Pattern(8, 8, 3, 8)));
    }

    [Fact]
    public void CropAndPaste_RoundTrip()
    {
        var image = Pattern(10, 6, 4, 16);
        var copy = new PngImage(10, 6, 4, 16);
        copy.Paste(image.Crop(0, 0, 4, 6), 0, 0);
        copy.Paste(image.Crop(4, 0, 6, 6), 4, 0);
        Assert.Equal(image.Data, copy.Data);
    }

    [Fact]
    public void Resize_AveragesAreas()
    {
        var image = new PngImage(4, 2, 1, 8);
        image.Set(0, 0, 0, 100);
        image.Set(1, 0, 0, 200);
        image.Set(0, 1, 0, 100);
        image.Set(1, 1, 0, 200);

        var half = image.Resize(2, 1);

        Assert.Equal(150, half.Get(0, 0, 0));
        Assert.Equal(0, half.Get(1, 0, 0));
        Assert.Equal((8, 4), (image.Resize(8, 4).Width, image.Resize(8, 4).Height));
    }

    internal static PngImage Pattern(int width, int height, int channels, int depth)
    {
        var image = new PngImage(width, height, channels, depth);
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                for (var c = 0; c < channels; c++)
                {
                    image.Set(x, y, c, ((x * 37) + (y * 91) + (c * 53)) * (depth == 16 ? 211 : 1) % (image.MaxValue + 1));
                }
            }
        }

        return image;
    }
}
